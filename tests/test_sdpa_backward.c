/*
 * test_sdpa_backward.c — attn_sdpa_backward against float64 references:
 *
 *  1. the analytic float64 gradients of test_util.c (ref_sdpa_backward), to
 *     an error of TOL relative to the magnitude of each row's terms (a
 *     gradient that cancels to 0 is judged against the terms that cancel;
 *     tu_max_err_scaled), over shapes covering both layouts, GQA and
 *     MQA, dim_v != dim_qk, len_q != len_kv, both causal alignments, every
 *     mask kind alone and combined (with broadcasting and -INFINITY biases),
 *     rows with no visible key, and shapes spanning several query blocks;
 *  2. central finite differences of the float64 forward (ref_sdpa), which
 *     check the analytic reference itself and libattn directly;
 *  3. 1, 2 and 3 threads and the default context give the same bits, and
 *     asking for fewer gradients (NULL outputs) leaves the others' bits;
 *  4. NaN in a masked value, or in keys and values beyond the valid length,
 *     never reaches the gradients; rows with no visible key get zeros.
 *
 * Gradient outputs are pre-filled with NaN (an element never written fails)
 * and followed by canaries (a write past the end fails).
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

#define TOL 1e-5
#define CANARY 8
#define CANARY_VALUE 1234.5f

enum { LEN_NONE, LEN_BATCH, LEN_QUERY };
enum { KEEP_NONE, KEEP_FULL, KEEP_BROADCAST };
enum { BIAS_NONE, BIAS_FINITE, BIAS_NINF };

typedef struct bwd_case {
    const char *name;
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    attn_layout layout;
    attn_causal causal;
    float scale;  /* 0: the default */
    int lengths, keep, bias;
    uint64_t seed;
} bwd_case;

#define BHSD ATTN_LAYOUT_BHSD
#define BSHD ATTN_LAYOUT_BSHD
#define NONE ATTN_CAUSAL_NONE
#define TL ATTN_CAUSAL_TOP_LEFT
#define BR ATTN_CAUSAL_BOTTOM_RIGHT

static const bwd_case cases[] = {
    {"plain", 1, 1, 1, 4, 6, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 1},
    {"batch_heads", 2, 3, 3, 5, 7, 4, 4, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 2},
    {"bshd", 2, 4, 4, 6, 5, 8, 8, BSHD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 3},
    {"gqa", 2, 6, 2, 7, 9, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 4},
    {"mqa_bshd", 1, 4, 1, 5, 6, 16, 16, BSHD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 5},
    {"dim_v_differs", 2, 2, 1, 4, 7, 5, 11, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 6},
    {"scale", 1, 2, 2, 4, 4, 8, 8, BHSD, NONE, 0.7f, LEN_NONE, KEEP_NONE, BIAS_NONE, 7},
    {"causal_top_left", 2, 2, 2, 6, 9, 8, 8, BHSD, TL, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 8},
    {"causal_bottom_right", 2, 2, 2, 6, 9, 8, 8, BSHD, BR, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 9},
    {"causal_br_lq_gt_lkv", 1, 2, 1, 9, 4, 8, 6, BHSD, BR, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 10},
    {"lengths_batch", 3, 2, 2, 5, 8, 8, 8, BHSD, NONE, 0, LEN_BATCH, KEEP_NONE, BIAS_NONE, 11},
    {"lengths_query", 2, 2, 1, 6, 8, 8, 8, BSHD, NONE, 0, LEN_QUERY, KEEP_NONE, BIAS_NONE, 12},
    {"keep_full", 2, 2, 2, 5, 7, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_FULL, BIAS_NONE, 13},
    {"keep_broadcast", 2, 3, 3, 5, 7, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_BROADCAST, BIAS_NONE,
     14},
    {"bias", 2, 2, 2, 5, 7, 8, 8, BSHD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_FINITE, 15},
    {"bias_ninf", 2, 2, 1, 5, 7, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NINF, 16},
    {"all_masks_causal", 2, 4, 2, 7, 9, 8, 4, BHSD, TL, 0, LEN_QUERY, KEEP_FULL, BIAS_NINF, 17},
    {"all_masks_br_bshd", 3, 2, 2, 6, 8, 4, 8, BSHD, BR, 0, LEN_BATCH, KEEP_BROADCAST,
     BIAS_FINITE, 18},
    {"one_query", 2, 2, 2, 1, 9, 8, 8, BHSD, NONE, 0, LEN_BATCH, KEEP_NONE, BIAS_NONE, 19},
    {"one_key", 2, 2, 2, 5, 1, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 20},
    {"no_keys", 2, 2, 2, 5, 0, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 21},
    {"no_queries", 2, 2, 2, 0, 5, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 22},
    {"blocks", 1, 2, 1, 300, 333, 32, 16, BHSD, NONE, 0, LEN_BATCH, KEEP_NONE, BIAS_FINITE, 23},
    {"blocks_causal", 2, 2, 2, 200, 260, 16, 16, BSHD, BR, 0, LEN_QUERY, KEEP_NONE, BIAS_NONE,
     24},
    {"blocks_long_kv", 1, 1, 1, 70, 5000, 8, 8, BHSD, NONE, 0, LEN_NONE, KEEP_BROADCAST,
     BIAS_NONE, 25},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* A problem and its mask arrays (ru_sdpa references them). */
typedef struct problem {
    ru_sdpa p;
    int64_t *lengths;
    uint8_t *keep;
    float *bias;
    float *d_out;
} problem;

/* Gradients of one call, each followed by CANARY guard elements. */
typedef struct grads {
    float *d_q, *d_k, *d_v;
} grads;

static double g_max[3];

static void make_masks(problem *pr, const bwd_case *c, tu_rng *rng)
{
    ru_sdpa *p = &pr->p;
    if (c->lengths != LEN_NONE) {
        int64_t n = c->lengths == LEN_QUERY ? c->B * c->Lq : c->B;
        pr->lengths = ru_alloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++)  /* 0 included: rows with no visible key */
            pr->lengths[i] = tu_randint(rng, 0, c->Lkv);
        if (n > 1)
            pr->lengths[n - 1] = c->Lkv;
        assert_int_equal(ru_sdpa_lengths(p, pr->lengths, c->lengths == LEN_QUERY), ATTN_OK);
    }
    int64_t full[3] = {c->B, c->Hq, c->Lq}, bcast[3] = {1, 1, c->Lq};
    if (c->keep != KEEP_NONE) {
        const int64_t *d = c->keep == KEEP_FULL ? full : bcast;
        int64_t n = d[0] * d[1] * d[2] * c->Lkv;
        pr->keep = ru_alloc((size_t)(n > 0 ? n : 1));
        for (int64_t i = 0; i < n; i++)
            pr->keep[i] = tu_uniform(rng) < 0.75;
        assert_int_equal(ru_sdpa_keep(p, pr->keep, d[0], d[1], d[2]), ATTN_OK);
    }
    if (c->bias != BIAS_NONE) {
        int64_t n = c->B * c->Hq * c->Lq * c->Lkv;
        pr->bias = ru_floats(n > 0 ? n : 1);
        tu_fill_normal(rng, pr->bias, (size_t)n, 0.0f, 1.0f);
        if (c->bias == BIAS_NINF)
            for (int64_t i = 0; i < n; i++)
                if (tu_uniform(rng) < 0.2)
                    pr->bias[i] = -INFINITY;
        assert_int_equal(ru_sdpa_bias(p, pr->bias, c->B, c->Hq, c->Lq), ATTN_OK);
    }
}

static void problem_make(problem *pr, const bwd_case *c)
{
    tu_rng rng;
    memset(pr, 0, sizeof *pr);
    ru_sdpa_init(&pr->p, c->B, c->Hq, c->Hkv, c->Lq, c->Lkv, c->D, c->Dv, c->layout, c->causal,
                 c->scale, c->seed);
    tu_rng_seed(&rng, c->seed * 7919 + 1);
    make_masks(pr, c, &rng);
    pr->d_out = ru_floats(pr->p.no);
    tu_fill_normal(&rng, pr->d_out, (size_t)pr->p.no, 0.0f, 1.0f);
}

static void problem_free(problem *pr)
{
    ru_sdpa_free(&pr->p);
    free(pr->lengths), free(pr->keep), free(pr->bias), free(pr->d_out);
}

static float *alloc_grad(int64_t n)
{
    float *g = ru_floats(n + CANARY);
    for (int i = 0; i < CANARY; i++)
        g[n + i] = CANARY_VALUE;
    return g;
}

static void check_canary(const char *what, const float *g, int64_t n)
{
    for (int i = 0; i < CANARY; i++)
        if (g[n + i] != CANARY_VALUE)
            fail_msg("%s: canary %d overwritten", what, i);
}

static grads grads_alloc(const ru_sdpa *p)
{
    return (grads){alloc_grad(p->nq), alloc_grad(p->nk), alloc_grad(p->nv)};
}

static void grads_free(grads *g)
{
    free(g->d_q), free(g->d_k), free(g->d_v);
}

/* The forward's out and lse, on a one-thread context. */
static void forward(const ru_sdpa *p, ru_out *fw)
{
    assert_int_equal(ru_sdpa_run(p, 1, fw), ATTN_OK);
}

/* attn_sdpa_backward on a context with `threads` threads (-1: default);
 * which: bit 0 d_q, bit 1 d_k, bit 2 d_v. */
static attn_status backward(const problem *pr, const ru_out *fw, int threads, int which,
                            grads *g)
{
    const ru_sdpa *p = &pr->p;
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    if (threads >= 0)
        assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    assert_int_equal(ru_sdpa_make_op(p, &op), ATTN_OK);
    attn_status st = attn_sdpa_backward(ctx, op, p->q, p->k, p->v, p->mask, fw->out, fw->lse,
                                        pr->d_out, which & 1 ? g->d_q : NULL,
                                        which & 2 ? g->d_k : NULL, which & 4 ? g->d_v : NULL);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    return st;
}

/* The float64 gradients and the magnitudes of their terms. */
typedef struct ref_grads {
    double *q, *k, *v, *mq, *mk, *mv;
} ref_grads;

static void ref_grads_make(const problem *pr, ref_grads *r)
{
    const ru_sdpa *p = &pr->p;
    ref_shape rs = ru_sdpa_shape(p);
    r->q = ru_doubles(p->nq), r->k = ru_doubles(p->nk), r->v = ru_doubles(p->nv);
    r->mq = ru_doubles(p->nq), r->mk = ru_doubles(p->nk), r->mv = ru_doubles(p->nv);
    assert_int_equal(
        ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr->d_out, 0, r->q, r->k, r->v), 0);
    assert_int_equal(
        ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr->d_out, 1, r->mq, r->mk, r->mv), 0);
}

static void ref_grads_free(ref_grads *r)
{
    free(r->q), free(r->k), free(r->v), free(r->mq), free(r->mk), free(r->mv);
}

/* Normalized by the row's largest term magnitude (tu_max_err_scaled). */
static void check_close(const char *what, const char *name, const float *a, const double *r,
                        const double *mag, int64_t n, int64_t row, double *max)
{
    int64_t at;
    double err = tu_max_err_scaled(a, r, mag, n, row, &at);
    if (err > *max)
        *max = err;
    if (err > TOL)
        fail_msg("%s: %s error %.3g > %.1g at %lld (libattn %.9g, reference %.9g)", name, what,
                 err, TOL, (long long)at, (double)a[at], r[at]);
}

static void test_against_reference(void **state)
{
    const bwd_case *c = *state;
    problem pr;
    problem_make(&pr, c);
    ru_sdpa *p = &pr.p;
    ru_out fw;
    forward(p, &fw);
    grads g = grads_alloc(p);
    assert_int_equal(backward(&pr, &fw, -1, 7, &g), ATTN_OK);
    check_canary("d_q", g.d_q, p->nq);
    check_canary("d_k", g.d_k, p->nk);
    check_canary("d_v", g.d_v, p->nv);

    ref_grads r;
    ref_grads_make(&pr, &r);
    check_close("d_q", c->name, g.d_q, r.q, r.mq, p->nq, c->D, &g_max[0]);
    check_close("d_k", c->name, g.d_k, r.k, r.mk, p->nk, c->D, &g_max[1]);
    check_close("d_v", c->name, g.d_v, r.v, r.mv, p->nv, c->Dv, &g_max[2]);
    ref_grads_free(&r);
    grads_free(&g);
    ru_out_free(&fw);
    problem_free(&pr);
}

/* ---- the same bits for any thread count and any subset of outputs ------- */

static void test_threads_and_subsets(void **state)
{
    (void)state;
    const bwd_case *shapes[] = {&cases[22], &cases[23], &cases[3]};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        problem pr;
        problem_make(&pr, shapes[s]);
        ru_sdpa *p = &pr.p;
        ru_out fw;
        forward(p, &fw);
        grads one = grads_alloc(p);
        assert_int_equal(backward(&pr, &fw, 1, 7, &one), ATTN_OK);
        const int threads[] = {2, 3, -1};
        for (int t = 0; t < 3; t++) {
            grads g = grads_alloc(p);
            assert_int_equal(backward(&pr, &fw, threads[t], 7, &g), ATTN_OK);
            if (threads[t] > 0) {  /* the default context may thread the BLAS */
                assert_true(ru_same_bits("d_q", one.d_q, g.d_q, p->nq));
                assert_true(ru_same_bits("d_k", one.d_k, g.d_k, p->nk));
                assert_true(ru_same_bits("d_v", one.d_v, g.d_v, p->nv));
            }
            grads_free(&g);
        }
        for (int which = 1; which < 7; which++) {
            grads g = grads_alloc(p);
            assert_int_equal(backward(&pr, &fw, 1, which, &g), ATTN_OK);
            /* Outputs not asked for stay as they were (NaN); the others are
             * the full call's bits. */
            if (which & 1)
                assert_true(ru_same_bits("d_q subset", one.d_q, g.d_q, p->nq));
            else
                assert_int_equal(tu_count_nonfinite(g.d_q, p->nq), p->nq);
            if (which & 2)
                assert_true(ru_same_bits("d_k subset", one.d_k, g.d_k, p->nk));
            else
                assert_int_equal(tu_count_nonfinite(g.d_k, p->nk), p->nk);
            if (which & 4)
                assert_true(ru_same_bits("d_v subset", one.d_v, g.d_v, p->nv));
            else
                assert_int_equal(tu_count_nonfinite(g.d_v, p->nv), p->nv);
            grads_free(&g);
        }
        grads_free(&one);
        ru_out_free(&fw);
        problem_free(&pr);
    }
}

/* ---- central finite differences of the float64 forward ----------------- */

/* L = Σ d_out · out, out from ref_sdpa in double. */
static double loss(const problem *pr)
{
    const ru_sdpa *p = &pr->p;
    ref_shape rs = ru_sdpa_shape(p);
    double *out = ru_doubles(p->no);
    assert_int_equal(ref_sdpa(&rs, p->q, p->k, p->v, &p->rm, out, NULL, NULL), 0);
    double l = 0.0;
    for (int64_t i = 0; i < p->no; i++)
        l += (double)pr->d_out[i] * out[i];
    free(out);
    return l;
}

static double loss_of(void *pr)
{
    return loss(pr);
}

/* ∂L/∂x by central differences with the steps x ± 2^-10. */
static double numeric_derivative(problem *pr, float *x)
{
    return tu_central_difference(x, 0x1p-10, loss_of, pr);
}

/* Every element of one input: the numeric derivative against the float64
 * reference (to 1e-6) and against libattn (to TOL), both normalized by the
 * row's term magnitudes. */
static void check_numeric(const char *name, problem *pr, float *x, int64_t n, int64_t row,
                          const double *ref, const double *mag, const float *lib)
{
    double *num = ru_doubles(n);
    for (int64_t i = 0; i < n; i++)
        num[i] = numeric_derivative(pr, &x[i]);
    double err_ref = 0.0;
    int64_t worst = -1;
    for (int64_t r0 = 0; r0 < n; r0 += row) {
        double norm = 0.0;
        for (int64_t i = r0; i < r0 + row; i++)
            norm = mag[i] > norm ? mag[i] : norm;
        for (int64_t i = r0; i < r0 + row; i++) {
            double d = fabs(ref[i] - num[i]);
            double e = d == 0.0 ? 0.0 : norm > 0.0 ? d / norm : INFINITY;
            if (e > err_ref)
                err_ref = e, worst = i;
        }
    }
    if (err_ref > 1e-6)
        fail_msg("%s: reference vs finite differences %.3g at %lld (%.9g vs %.9g)", name,
                 err_ref, (long long)worst, ref[worst], num[worst]);
    int64_t at;
    double err_lib = tu_max_err_scaled(lib, num, mag, n, row, &at);
    if (err_lib > TOL)
        fail_msg("%s: libattn vs finite differences %.3g at %lld (%.9g vs %.9g)", name, err_lib,
                 (long long)at, (double)lib[at], num[at]);
    print_message("%-4s max error vs finite differences: float64 reference %.2g, libattn %.2g\n",
                  name, err_ref, err_lib);
    free(num);
}

static void test_finite_differences(void **state)
{
    (void)state;
    const bwd_case fd[] = {
        {"fd_plain", 2, 4, 2, 5, 7, 3, 4, BHSD, NONE, 0, LEN_NONE, KEEP_NONE, BIAS_NONE, 101},
        {"fd_masks", 2, 2, 1, 5, 7, 3, 4, BSHD, BR, 0, LEN_QUERY, KEEP_FULL, BIAS_NINF, 102},
    };
    for (size_t c = 0; c < 2; c++) {
        problem pr;
        problem_make(&pr, &fd[c]);
        ru_sdpa *p = &pr.p;
        ru_out fw;
        forward(p, &fw);
        grads g = grads_alloc(p);
        assert_int_equal(backward(&pr, &fw, 1, 7, &g), ATTN_OK);
        ref_grads r;
        ref_grads_make(&pr, &r);
        check_numeric("d_q", &pr, p->q, p->nq, fd[c].D, r.q, r.mq, g.d_q);
        check_numeric("d_k", &pr, p->k, p->nk, fd[c].D, r.k, r.mk, g.d_k);
        check_numeric("d_v", &pr, p->v, p->nv, fd[c].Dv, r.v, r.mv, g.d_v);
        ref_grads_free(&r);
        grads_free(&g);
        ru_out_free(&fw);
        problem_free(&pr);
    }
}

/* ---- NaN confinement and empty rows ----------------------------------- */

/* A NaN value of a key masked for every query (boolean mask), and NaN keys
 * and values beyond a batch row's valid length, leave every gradient
 * finite; the masked keys' d_k and d_v are 0. Batch row 1 has length 0:
 * its d_q is 0, not NaN. */
static void test_nan_masked_and_empty(void **state)
{
    (void)state;
    const int64_t B = 2, H = 2, Lq = 4, Lkv = 6, D = 4;
    problem pr;
    memset(&pr, 0, sizeof pr);
    ru_sdpa_init(&pr.p, B, H, H, Lq, Lkv, D, D, BHSD, NONE, 0.0f, 31);
    ru_sdpa *p = &pr.p;
    int64_t lengths[2] = {5, 0};
    assert_int_equal(ru_sdpa_lengths(p, lengths, 0), ATTN_OK);
    uint8_t keep[6] = {1, 1, 0, 1, 1, 1};  /* key 2 masked for everyone */
    assert_int_equal(ru_sdpa_keep(p, keep, 1, 1, 1), ATTN_OK);
    pr.d_out = ru_floats(p->no);
    tu_rng rng;
    tu_rng_seed(&rng, 32);
    tu_fill_normal(&rng, pr.d_out, (size_t)p->no, 0.0f, 1.0f);
    ru_out fw;
    forward(p, &fw);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t d = 0; d < D; d++) {
                int64_t base = (b * H + h) * Lkv * D;
                p->v[base + 2 * D + d] = NAN;       /* masked by keep */
                p->k[base + 5 * D + d] = NAN;       /* beyond length 5 */
                p->v[base + 5 * D + d] = NAN;
                if (b == 1)                          /* length 0: nothing read */
                    p->k[base + d] = p->v[base + d] = NAN;
            }
    grads g = grads_alloc(p);
    assert_int_equal(backward(&pr, &fw, 1, 7, &g), ATTN_OK);
    assert_int_equal(tu_count_nonfinite(g.d_q, p->nq), 0);
    assert_int_equal(tu_count_nonfinite(g.d_k, p->nk), 0);
    assert_int_equal(tu_count_nonfinite(g.d_v, p->nv), 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t d = 0; d < D; d++) {
                int64_t base = (b * H + h) * Lkv * D;
                assert_true(g.d_k[base + 2 * D + d] == 0.0f && g.d_v[base + 2 * D + d] == 0.0f);
                assert_true(g.d_k[base + 5 * D + d] == 0.0f && g.d_v[base + 5 * D + d] == 0.0f);
            }
    for (int64_t i = p->nq / 2; i < p->nq; i++)  /* batch row 1 */
        assert_true(g.d_q[i] == 0.0f);
    grads_free(&g);
    ru_out_free(&fw);
    problem_free(&pr);
}

static char g_names[N_CASES][64];

int main(void)
{
    struct CMUnitTest tests[N_CASES + 3];
    size_t n = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        snprintf(g_names[i], sizeof g_names[i], "reference_%s", cases[i].name);
        tests[n++] = (struct CMUnitTest){g_names[i], test_against_reference, NULL, NULL,
                                         (void *)&cases[i]};
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_threads_and_subsets);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_finite_differences);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_nan_masked_and_empty);
    int failed = _cmocka_run_group_tests("sdpa_backward", tests, n, NULL, NULL);
    printf("sdpa_backward: largest normalized errors against float64: d_q %.2g, d_k %.2g, "
           "d_v %.2g (tolerance %.0g)\n", g_max[0], g_max[1], g_max[2], TOL);
    return failed;
}
