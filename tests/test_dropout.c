/*
 * test_dropout.c — seeded dropout on the attention weights
 * (attn_sdpa_set_dropout, attn_dropout_keep_mask, and dropout in
 * attn_sdpa_forward and attn_sdpa_backward):
 *
 *  1. the generator is Philox 4x32-10: Random123's known-answer vectors
 *     (tests/kat_vectors of the Random123 distribution; linked against the
 *     library's objects to reach the internal attn_philox4x32_10);
 *  2. attn_dropout_keep_mask is the documented function of (seed, b, h, i,
 *     j), recomputed here one weight at a time from the scalar generator;
 *  3. the keep rate is within 4σ of 1 − p over 10^6 weights, for several p;
 *     different seeds give different masks;
 *  4. p = 0 gives bitwise the forward without dropout;
 *  5. the forward's out and weights equal a float64 reference that applies
 *     the keep mask, and the backward equals the float64 gradients of that
 *     dropped forward and central finite differences of it with the same
 *     seed (so forward and backward use the same mask);
 *  6. 1, 2 and 3 threads give the same bits, forward and backward;
 *  7. the setter's errors.
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

#include "../src/attn_internal.h" /* attn_philox4x32_10 */
#include "test_util.h"

#define TOL 1e-5

/* ---- 1. Philox 4x32-10 ----------------------------------------------------- */

static void test_philox_known_answers(void **state)
{
    (void)state;
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t c = 0; c < sizeof kat / sizeof kat[0]; c++) {
        uint32_t out[4];
        attn_philox4x32_10(kat[c].ctr, kat[c].key, out);
        for (int w = 0; w < 4; w++)
            if (out[w] != kat[c].out[w])
                fail_msg("vector %zu word %d: %08x, want %08x", c, w, out[w], kat[c].out[w]);
    }
}

/* ---- shared fixture ------------------------------------------------------ */

typedef struct shape {
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
} shape;

static attn_sdpa *make_op(const shape *s, float p, uint64_t seed, attn_causal causal)
{
    attn_sdpa *op = NULL;
    assert_int_equal(attn_sdpa_create(&op, s->B, s->Hq, s->Hkv, s->Lq, s->Lkv, s->D, s->Dv),
                     ATTN_OK);
    assert_int_equal(attn_sdpa_set_causal(op, causal), ATTN_OK);
    assert_int_equal(attn_sdpa_set_dropout(op, p, seed), ATTN_OK);
    return op;
}

static uint8_t *keep_mask(const attn_sdpa *op, const shape *s)
{
    size_t n = (size_t)(s->B * s->Hq * s->Lq * s->Lkv);
    uint8_t *keep = malloc(n + 1);
    assert_non_null(keep);
    assert_int_equal(attn_dropout_keep_mask(op, keep), ATTN_OK);
    return keep;
}

/* ---- 2. the mask is the documented function ------------------------------ */

static void test_keep_mask_is_documented_function(void **state)
{
    (void)state;
    const shape s = {2, 3, 3, 5, 37, 4, 4};
    const float ps[] = {0.1f, 0.5f, 0.93f};
    const uint64_t seeds[] = {0, 42, 0xfedcba9876543210ull};
    for (int a = 0; a < 3; a++) {
        attn_sdpa *op = make_op(&s, ps[a], seeds[a], ATTN_CAUSAL_NONE);
        uint8_t *keep = keep_mask(op, &s);
        uint32_t key[2] = {(uint32_t)seeds[a], (uint32_t)(seeds[a] >> 32)};
        uint32_t threshold = (uint32_t)nearbyint((double)ps[a] * 4294967296.0);
        for (int64_t bh = 0; bh < s.B * s.Hq; bh++)
            for (int64_t i = 0; i < s.Lq; i++)
                for (int64_t j = 0; j < s.Lkv; j++) {
                    uint32_t ctr[4] = {(uint32_t)(j / 4), (uint32_t)i, (uint32_t)bh, 0}, w[4];
                    attn_philox4x32_10(ctr, key, w);
                    int want = w[j % 4] >= threshold;
                    if (keep[(bh * s.Lq + i) * s.Lkv + j] != want)
                        fail_msg("p %g seed %llu: keep(bh %lld, i %lld, j %lld) = %d, want %d",
                                 (double)ps[a], (unsigned long long)seeds[a], (long long)bh,
                                 (long long)i, (long long)j, keep[(bh * s.Lq + i) * s.Lkv + j],
                                 want);
                }
        free(keep);
        attn_sdpa_destroy(op);
    }
}

/* ---- 3. keep rate -------------------------------------------------------- */

static void test_keep_rate(void **state)
{
    (void)state;
    const shape s = {2, 4, 4, 250, 500, 8, 8};  /* 10^6 weights */
    const float ps[] = {0.1f, 0.25f, 0.5f, 0.9f};
    double n = (double)(s.B * s.Hq * s.Lq * s.Lkv);
    uint8_t *prev = NULL;
    for (int a = 0; a < 4; a++) {
        attn_sdpa *op = make_op(&s, ps[a], 1000 + (uint64_t)a, ATTN_CAUSAL_NONE);
        uint8_t *keep = keep_mask(op, &s);
        double kept = 0.0;
        for (int64_t x = 0; x < (int64_t)n; x++)
            kept += keep[x];
        double q = 1.0 - ps[a], sigma = sqrt(n * q * (1.0 - q));
        print_message("p %.2f: kept %.0f of %.0f, expected %.0f ± %.0f (σ)\n", (double)ps[a],
                      kept, n, n * q, sigma);
        if (fabs(kept - n * q) > 4.0 * sigma)
            fail_msg("p %g: kept %.0f, outside %.0f ± 4σ (σ = %.1f)", (double)ps[a], kept, n * q,
                     sigma);
        if (prev && memcmp(prev, keep, (size_t)n) == 0)
            fail_msg("two seeds gave the same mask");
        free(prev);
        prev = keep;
        attn_sdpa_destroy(op);
    }
    free(prev);
}

/* ---- 4-6. forward and backward ------------------------------------------- */

typedef struct problem {
    shape s;
    float *q, *k, *v, *d_out;
    int64_t nq, nk, nv, no, nw, nl;
} problem;

static void problem_make(problem *p, const shape *s, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    p->s = *s;
    p->nq = s->B * s->Hq * s->Lq * s->D, p->nk = s->B * s->Hkv * s->Lkv * s->D;
    p->nv = s->B * s->Hkv * s->Lkv * s->Dv, p->no = s->B * s->Hq * s->Lq * s->Dv;
    p->nw = s->B * s->Hq * s->Lq * s->Lkv, p->nl = s->B * s->Hq * s->Lq;
    p->q = malloc((size_t)p->nq * 4), p->k = malloc((size_t)p->nk * 4);
    p->v = malloc((size_t)p->nv * 4), p->d_out = malloc((size_t)p->no * 4);
    assert_true(p->q && p->k && p->v && p->d_out);
    tu_fill_normal(&rng, p->q, (size_t)p->nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->k, (size_t)p->nk, 0.0f, 1.0f);
    tu_fill_uniform(&rng, p->v, (size_t)p->nv, -2.0f, 2.0f);
    tu_fill_normal(&rng, p->d_out, (size_t)p->no, 0.0f, 1.0f);
}

static void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->d_out);
}

static float *floats(int64_t n)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    assert_non_null(x);
    tu_fill_nan(x, (size_t)n);
    return x;
}

static double *doubles(int64_t n)
{
    double *x = calloc((size_t)(n > 0 ? n : 1), sizeof *x);
    assert_non_null(x);
    return x;
}

typedef struct run {
    float *out, *w, *lse, *dq, *dk, *dv;
} run;

static void run_free(run *r)
{
    free(r->out), free(r->w), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

/* Forward (out, weights, lse) and backward on a context of `threads`. */
static run run_lib(const problem *p, const attn_sdpa *op, int threads)
{
    run r = {floats(p->no), floats(p->nw), floats(p->nl), floats(p->nq), floats(p->nk),
             floats(p->nv)};
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    assert_int_equal(attn_sdpa_forward(ctx, op, p->q, p->k, p->v, NULL, r.out, r.w, r.lse),
                     ATTN_OK);
    assert_int_equal(attn_sdpa_backward(ctx, op, p->q, p->k, p->v, NULL, r.out, r.lse,
                                        p->d_out, r.dq, r.dk, r.dv),
                     ATTN_OK);
    attn_context_destroy(ctx);
    return r;
}

static ref_shape ref_of(const shape *s, attn_causal causal)
{
    return (ref_shape){s->B, s->Hq, s->Hkv, s->Lq, s->Lkv, s->D, s->Dv, REF_BHSD, (int)causal,
                       (double)(float)(1.0 / sqrt((double)s->D)), NULL};
}

/* The dropped forward in float64: weights w·Z (Z = keep / (1 − p)) and
 * out = Σ_j w_j Z_j v_j; wd [nw] and out [no] may be NULL. */
static void ref_dropped_forward(const problem *p, attn_causal causal, const uint8_t *keep,
                                double scale_z, double *wd, double *out)
{
    const shape *s = &p->s;
    ref_shape rs = ref_of(s, causal);
    double *w = doubles(p->nw), *o = doubles(p->no);
    assert_int_equal(ref_sdpa(&rs, p->q, p->k, p->v, NULL, o, w, NULL), 0);
    for (int64_t x = 0; x < p->nw; x++)
        w[x] = keep[x] ? w[x] * scale_z : 0.0;
    int64_t group = s->Hq / s->Hkv;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->Hq; h++)
            for (int64_t i = 0; i < s->Lq; i++)
                for (int64_t c = 0; c < s->Dv && out; c++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < s->Lkv; j++)
                        acc += w[((b * s->Hq + h) * s->Lq + i) * s->Lkv + j] *
                               p->v[((b * s->Hkv + h / group) * s->Lkv + j) * s->Dv + c];
                    out[((b * s->Hq + h) * s->Lq + i) * s->Dv + c] = acc;
                }
    if (wd)
        memcpy(wd, w, (size_t)p->nw * sizeof *w);
    free(w), free(o);
}

/* Σ d_out · out of the dropped forward, for finite differences. */
static double loss(const problem *p, attn_causal causal, const uint8_t *keep, double scale_z)
{
    double *out = doubles(p->no), l = 0.0;
    ref_dropped_forward(p, causal, keep, scale_z, NULL, out);
    for (int64_t x = 0; x < p->no; x++)
        l += (double)p->d_out[x] * out[x];
    free(out);
    return l;
}

typedef struct loss_args {
    const problem *p;
    attn_causal causal;
    const uint8_t *keep;
    double scale_z;
} loss_args;

static double loss_of(void *arg)
{
    const loss_args *a = arg;
    return loss(a->p, a->causal, a->keep, a->scale_z);
}

static double numeric_derivative(const problem *p, attn_causal causal, const uint8_t *keep,
                                 double scale_z, float *x)
{
    loss_args a = {p, causal, keep, scale_z};
    return tu_central_difference(x, 0x1p-10, loss_of, &a);
}

/* |lib − num| / (max |num| over the tensor + 1e-3): gradients of different
 * rows share one scale here (a dropped row can be exactly 0). */
static void check_numeric(const char *name, const problem *p, attn_causal causal,
                          const uint8_t *keep, double scale_z, float *x, int64_t n,
                          const float *lib)
{
    double *num = doubles(n), norm = 1e-3, worst = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        num[i] = numeric_derivative(p, causal, keep, scale_z, &x[i]);
        norm = fabs(num[i]) > norm ? fabs(num[i]) : norm;
    }
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)lib[i] - num[i]) / norm;
        if (!(e <= worst))
            worst = e, at = i;
    }
    print_message("%s with dropout: libattn vs finite differences %.2g\n", name, worst);
    if (!(worst <= 1e-5))
        fail_msg("%s: libattn %.9g vs finite differences %.9g at %lld (error %.3g)", name,
                 (double)lib[at], num[at], (long long)at, worst);
    free(num);
}

static void test_p_zero_is_no_dropout(void **state)
{
    (void)state;
    const shape s = {2, 4, 2, 70, 90, 16, 8};
    problem p;
    problem_make(&p, &s, 5);
    attn_sdpa *plain = make_op(&s, 0.0f, 0, ATTN_CAUSAL_NONE);
    attn_sdpa *zero = make_op(&s, 0.0f, 777, ATTN_CAUSAL_NONE);
    run a = run_lib(&p, plain, 1), b = run_lib(&p, zero, 1);
    assert_memory_equal(a.out, b.out, (size_t)p.no * 4);
    assert_memory_equal(a.w, b.w, (size_t)p.nw * 4);
    assert_memory_equal(a.dq, b.dq, (size_t)p.nq * 4);
    assert_memory_equal(a.dk, b.dk, (size_t)p.nk * 4);
    assert_memory_equal(a.dv, b.dv, (size_t)p.nv * 4);
    run_free(&a), run_free(&b);
    attn_sdpa_destroy(plain), attn_sdpa_destroy(zero);
    problem_free(&p);
}

static void test_forward_backward_against_float64(void **state)
{
    (void)state;
    const shape s = {2, 2, 1, 5, 7, 3, 4};
    const attn_causal causals[] = {ATTN_CAUSAL_NONE, ATTN_CAUSAL_BOTTOM_RIGHT};
    for (int c = 0; c < 2; c++) {
        problem p;
        problem_make(&p, &s, 11 + (uint64_t)c);
        const float drop = 0.3f;
        attn_sdpa *op = make_op(&s, drop, 99 + (uint64_t)c, causals[c]);
        uint8_t *keep = keep_mask(op, &s);
        double scale_z = 1.0 / (1.0 - (double)drop);
        run r = run_lib(&p, op, 1);
        double *wd = doubles(p.nw), *out = doubles(p.no);
        ref_dropped_forward(&p, causals[c], keep, scale_z, wd, out);
        int64_t at;
        double e_out = tu_max_err(r.out, out, p.no, s.Dv, &at);
        double e_w = tu_max_err(r.w, wd, p.nw, s.Lkv, &at);
        print_message("causal %d: dropped forward vs float64: out %.2g, weights %.2g\n",
                      (int)causals[c], e_out, e_w);
        assert_true(e_out <= TOL);
        assert_true(e_w <= TOL);
        check_numeric("d_q", &p, causals[c], keep, scale_z, p.q, p.nq, r.dq);
        check_numeric("d_k", &p, causals[c], keep, scale_z, p.k, p.nk, r.dk);
        check_numeric("d_v", &p, causals[c], keep, scale_z, p.v, p.nv, r.dv);
        free(wd), free(out), free(keep);
        run_free(&r);
        attn_sdpa_destroy(op);
        problem_free(&p);
    }
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    const shape s = {2, 4, 2, 150, 170, 16, 16};
    problem p;
    problem_make(&p, &s, 21);
    attn_sdpa *op = make_op(&s, 0.2f, 1234, ATTN_CAUSAL_TOP_LEFT);
    run one = run_lib(&p, op, 1);
    for (int t = 2; t <= 3; t++) {
        run r = run_lib(&p, op, t);
        assert_memory_equal(one.out, r.out, (size_t)p.no * 4);
        assert_memory_equal(one.w, r.w, (size_t)p.nw * 4);
        assert_memory_equal(one.dq, r.dq, (size_t)p.nq * 4);
        assert_memory_equal(one.dk, r.dk, (size_t)p.nk * 4);
        assert_memory_equal(one.dv, r.dv, (size_t)p.nv * 4);
        run_free(&r);
    }
    run_free(&one);
    attn_sdpa_destroy(op);
    problem_free(&p);
}

/* ---- 7. errors ------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    const shape s = {1, 1, 1, 2, 3, 4, 4};
    attn_sdpa *op = make_op(&s, 0.5f, 1, ATTN_CAUSAL_NONE);
    assert_int_equal(attn_sdpa_set_dropout(NULL, 0.1f, 1), ATTN_ERR_NULL_POINTER);
    assert_non_null(strstr(attn_last_error(), "attn_sdpa_set_dropout: op"));
    const float bad[] = {-0.1f, 1.0f, 1.5f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(attn_sdpa_set_dropout(op, bad[i], 1), ATTN_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(attn_last_error(), "attn_sdpa_set_dropout: p"));
    }
    /* The failed sets left p = 0.5: about half of a large mask... here the
     * mask must still equal the one of a fresh op with p = 0.5, seed 1. */
    attn_sdpa *fresh = make_op(&s, 0.5f, 1, ATTN_CAUSAL_NONE);
    uint8_t *a = keep_mask(op, &s), *b = keep_mask(fresh, &s);
    assert_memory_equal(a, b, 6);
    free(a), free(b);
    assert_int_equal(attn_dropout_keep_mask(NULL, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_dropout_keep_mask(op, NULL), ATTN_ERR_NULL_POINTER);
    assert_non_null(strstr(attn_last_error(), "attn_dropout_keep_mask: keep"));
    attn_sdpa_destroy(op), attn_sdpa_destroy(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_keep_mask_is_documented_function),
        cmocka_unit_test(test_keep_rate),
        cmocka_unit_test(test_p_zero_is_no_dropout),
        cmocka_unit_test(test_forward_backward_against_float64),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
