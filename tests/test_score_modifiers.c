/*
 * test_score_modifiers.c — the sliding window, logit softcap and ALiBi of
 * attn_sdpa and attn_mha (attn.h, "Score modifiers"):
 *
 *  1. forward (out, weights, lse) and backward (d_q, d_k, d_v) against the
 *     float64 reference of test_util.c with its own ref_mods, written from
 *     the header's formulas, over cases covering each modifier alone and
 *     combined, every causal alignment, len_q != len_kv, GQA, BSHD, masks,
 *     empty rows and shapes of several query blocks, on 1 and 3 threads;
 *  2. finite differences of the float64 forward check the reference's
 *     softcap chain (1 − tanh²) and libattn's gradients directly;
 *  3. ALiBi equals the explicit bias −slope·|p − j| with the slopes of
 *     Press et al.'s get_slopes (written here recursively, as their code),
 *     for 1 to 12 heads: this checks the default slopes;
 *  4. a window equals the boolean mask of the same keys, with dropout on
 *     (the window's blocks start at a key j0 > 0, where the dropout counter
 *     must still number keys from 0), forward and backward;
 *  5. a softcap equals feeding the capped logits directly (K = identity);
 *  6. a window changes the output; NaN keys and values outside every
 *     window are never read;
 *  7. the multi-head layer's modifiers against the float64 MHA reference,
 *     its backward against finite differences, and ATTN_ERR_STATE after a
 *     modifier changes;
 *  8. the setters' errors leave the settings unchanged.
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

#define BHSD ATTN_LAYOUT_BHSD
#define BSHD ATTN_LAYOUT_BSHD
#define NONE ATTN_CAUSAL_NONE
#define TL ATTN_CAUSAL_TOP_LEFT
#define BR ATTN_CAUSAL_BOTTOM_RIGHT

enum { ALIBI_OFF, ALIBI_DEFAULT, ALIBI_CUSTOM };
enum { MASK_NONE, MASK_LENGTHS, MASK_BIAS_NINF };

typedef struct mod_case {
    const char *name;
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    attn_layout layout;
    attn_causal causal;
    float scale;              /* 0: the default */
    int window;               /* 0: none */
    int64_t left, right;
    float softcap;
    int alibi, mask;
    uint64_t seed;
} mod_case;

static const mod_case cases[] = {
    {"window_causal_tl", 2, 4, 2, 9, 9, 8, 8, BHSD, TL, 0, 1, 3, 0, 0, ALIBI_OFF, MASK_NONE, 1},
    {"window_br_cache", 2, 2, 1, 5, 12, 8, 8, BSHD, BR, 0, 1, 4, 0, 0, ALIBI_OFF, MASK_NONE, 2},
    {"window_both_sides", 1, 2, 2, 7, 10, 8, 4, BHSD, NONE, 0, 1, 2, 3, 0, ALIBI_OFF, MASK_NONE,
     3},
    {"window_left_only", 2, 2, 2, 6, 9, 8, 8, BHSD, NONE, 0, 1, 3, -1, 0, ALIBI_OFF, MASK_NONE, 4},
    {"window_right_only", 2, 2, 2, 6, 9, 8, 8, BSHD, NONE, 0, 1, -1, 1, 0, ALIBI_OFF, MASK_NONE,
     5},
    {"window_self_only", 1, 2, 2, 6, 6, 8, 8, BHSD, TL, 0, 1, 0, 0, 0, ALIBI_OFF, MASK_NONE, 6},
    {"window_lq_gt_lkv", 1, 2, 1, 9, 4, 8, 8, BHSD, BR, 0, 1, 1, 0, 0, ALIBI_OFF, MASK_NONE, 7},
    {"window_lengths", 3, 2, 2, 6, 10, 8, 8, BSHD, NONE, 0, 1, 2, 2, 0, ALIBI_OFF, MASK_LENGTHS,
     8},
    /* without causal and len_q > len_kv, aligned positions fall far below 0:
     * a right bound beyond len_kv still cuts their keys */
    {"window_right_beyond_keys", 1, 2, 1, 10, 2, 8, 8, BHSD, NONE, 0, 1, -1, 2, 0, ALIBI_OFF,
     MASK_NONE, 18},
    {"window_right_beyond_keys_blocks", 1, 2, 2, 300, 20, 8, 8, BSHD, NONE, 0, 1, 4, 25, 0,
     ALIBI_OFF, MASK_NONE, 19},
    {"softcap", 2, 2, 2, 6, 8, 8, 8, BHSD, NONE, 1.5f, 0, 0, 0, 2.0f, ALIBI_OFF, MASK_NONE, 9},
    {"softcap_gqa_br", 2, 4, 2, 7, 7, 8, 8, BSHD, BR, 2.0f, 0, 0, 0, 5.0f, ALIBI_OFF, MASK_NONE,
     10},
    {"softcap_ninf_bias", 2, 2, 1, 5, 7, 8, 8, BHSD, NONE, 1.0f, 0, 0, 0, 3.0f, ALIBI_OFF,
     MASK_BIAS_NINF, 11},
    {"alibi_default_tl", 1, 8, 8, 10, 10, 8, 8, BHSD, TL, 0, 0, 0, 0, 0, ALIBI_DEFAULT, MASK_NONE,
     12},
    {"alibi_custom_none", 2, 3, 1, 6, 9, 8, 8, BSHD, NONE, 0, 0, 0, 0, 0, ALIBI_CUSTOM, MASK_NONE,
     13},
    {"alibi_6_heads_br", 2, 6, 3, 5, 11, 8, 8, BHSD, BR, 0, 0, 0, 0, 0, ALIBI_DEFAULT,
     MASK_LENGTHS, 14},
    {"all_modifiers", 2, 4, 2, 9, 13, 8, 4, BSHD, BR, 0, 1, 5, 0, 3.0f, ALIBI_DEFAULT,
     MASK_BIAS_NINF, 15},
    {"blocks_window_alibi", 1, 2, 1, 600, 700, 16, 16, BHSD, BR, 0, 1, 50, 0, 0, ALIBI_DEFAULT,
     MASK_NONE, 16},
    {"blocks_window_softcap", 1, 1, 1, 300, 300, 16, 8, BSHD, NONE, 0, 1, 37, 20, 4.0f,
     ALIBI_OFF, MASK_LENGTHS, 17},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* A problem: ru_sdpa (inputs and masks in both views), the modifiers in
 * both views, and d_out. */
typedef struct problem {
    ru_sdpa p;
    const mod_case *c;
    ref_mods rmods;
    float *slopes;      /* custom slopes [Hq], or the default ones for the reference */
    int64_t *lengths;
    float *bias;
    float *d_out;
} problem;

/* get_slopes(n) of ofirpress/attention_with_linear_biases, as their
 * Python: the power-of-two sequence, or the largest power of two's
 * followed by every other slope of twice that. */
static void press_slopes(int64_t n, double *out)
{
    double lg = log2((double)n);
    if (lg == floor(lg)) {
        double start = pow(2.0, -pow(2.0, -(lg - 3.0)));
        for (int64_t i = 0; i < n; i++)
            out[i] = start * pow(start, (double)i);
        return;
    }
    int64_t c = (int64_t)pow(2.0, floor(lg));
    press_slopes(c, out);
    double *twice = ru_doubles(2 * c);
    press_slopes(2 * c, twice);
    for (int64_t k = 0; k < n - c; k++)
        out[c + k] = twice[2 * k];
    free(twice);
}

static void problem_make(problem *pr, const mod_case *c)
{
    memset(pr, 0, sizeof *pr);
    pr->c = c;
    ru_sdpa_init(&pr->p, c->B, c->Hq, c->Hkv, c->Lq, c->Lkv, c->D, c->Dv, c->layout, c->causal,
                 c->scale, c->seed);
    tu_rng rng;
    tu_rng_seed(&rng, c->seed * 31 + 7);
    pr->rmods = (ref_mods){.window = c->window, .left = c->left, .right = c->right,
                           .softcap = c->softcap};
    if (c->alibi != ALIBI_OFF) {
        pr->slopes = ru_floats(c->Hq);
        double *d = ru_doubles(c->Hq);
        press_slopes(c->Hq, d);
        for (int64_t h = 0; h < c->Hq; h++)
            pr->slopes[h] = c->alibi == ALIBI_CUSTOM ? (float)(0.05 + 0.4 * tu_uniform(&rng))
                                                     : (float)d[h];
        free(d);
        pr->rmods.alibi = pr->slopes;
    }
    if (c->mask == MASK_LENGTHS) {
        pr->lengths = ru_alloc((size_t)c->B * sizeof(int64_t));
        for (int64_t b = 0; b < c->B; b++)  /* 0 included: rows with no visible key */
            pr->lengths[b] = b == c->B - 1 ? c->Lkv : tu_randint(&rng, 0, c->Lkv);
        assert_int_equal(ru_sdpa_lengths(&pr->p, pr->lengths, 0), ATTN_OK);
    } else if (c->mask == MASK_BIAS_NINF) {
        int64_t n = c->B * c->Hq * c->Lq * c->Lkv;
        pr->bias = ru_floats(n);
        tu_fill_normal(&rng, pr->bias, (size_t)n, 0.0f, 1.0f);
        for (int64_t i = 0; i < n; i++)
            if (tu_uniform(&rng) < 0.2)
                pr->bias[i] = -INFINITY;
        assert_int_equal(ru_sdpa_bias(&pr->p, pr->bias, c->B, c->Hq, c->Lq), ATTN_OK);
    }
    pr->d_out = ru_floats(pr->p.no);
    tu_fill_normal(&rng, pr->d_out, (size_t)pr->p.no, 0.0f, 1.0f);
}

static void problem_free(problem *pr)
{
    ru_sdpa_free(&pr->p);
    free(pr->slopes), free(pr->lengths), free(pr->bias), free(pr->d_out);
}

/* The op of the problem with its modifiers set (default slopes through
 * NULL, so that the library's own slopes are the ones checked). */
static attn_sdpa *make_op(const problem *pr)
{
    const mod_case *c = pr->c;
    attn_sdpa *op = NULL;
    assert_int_equal(ru_sdpa_make_op(&pr->p, &op), ATTN_OK);
    if (c->window)
        assert_int_equal(attn_sdpa_set_window(op, c->left, c->right), ATTN_OK);
    assert_int_equal(attn_sdpa_set_softcap(op, c->softcap), ATTN_OK);
    if (c->alibi != ALIBI_OFF)
        assert_int_equal(
            attn_sdpa_set_alibi(op, c->alibi == ALIBI_CUSTOM ? pr->slopes : NULL), ATTN_OK);
    return op;
}

static ref_shape ref_of(const problem *pr)
{
    ref_shape rs = ru_sdpa_shape(&pr->p);
    rs.mods = &pr->rmods;
    return rs;
}

static attn_context *context(int threads)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    if (threads > 0)
        assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    return ctx;
}

static void forward(const problem *pr, int threads, ru_out *fw)
{
    attn_context *ctx = context(threads);
    attn_sdpa *op = make_op(pr);
    assert_int_equal(ru_sdpa_run_on(ctx, op, &pr->p, fw), ATTN_OK);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
}

typedef struct grads {
    float *q, *k, *v;
} grads;

static grads backward(const problem *pr, const ru_out *fw, int threads)
{
    const ru_sdpa *p = &pr->p;
    grads g = {ru_floats(p->nq), ru_floats(p->nk), ru_floats(p->nv)};
    attn_context *ctx = context(threads);
    attn_sdpa *op = make_op(pr);
    assert_int_equal(attn_sdpa_backward(ctx, op, p->q, p->k, p->v, p->mask, fw->out, fw->lse,
                                        pr->d_out, g.q, g.k, g.v),
                     ATTN_OK);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    return g;
}

static void grads_free(grads *g)
{
    free(g->q), free(g->k), free(g->v);
}

/* ---- 1. against the float64 reference ------------------------------------ */

static void check_forward(const problem *pr, const ru_out *fw, const char *what)
{
    const ru_sdpa *p = &pr->p;
    ref_shape rs = ref_of(pr);
    ru_ref d = {ru_doubles(p->no), ru_doubles(p->nw), ru_doubles(p->nl)};
    assert_int_equal(ref_sdpa(&rs, p->q, p->k, p->v, &p->rm, d.out, d.w, d.lse), 0);
    char name[96];
    snprintf(name, sizeof name, "%s %s out", pr->c->name, what);
    assert_true(ru_close(name, fw->out, d.out, p->no, p->Dv, TOL));
    snprintf(name, sizeof name, "%s %s weights", pr->c->name, what);
    assert_true(ru_close(name, fw->w, d.w, p->nw, p->Lkv, TOL));
    int64_t at;
    double e = tu_max_err_lse(fw->lse, d.lse, p->nl, &at);
    if (e > TOL)
        fail_msg("%s %s lse error %.3g at %lld", pr->c->name, what, e, (long long)at);
    ru_ref_free(&d);
}

static void check_grad(const char *name, const float *a, const double *r, const double *mag,
                       int64_t n, int64_t row)
{
    int64_t at;
    double err = tu_max_err_scaled(a, r, mag, n, row, &at);
    if (err > TOL)
        fail_msg("%s error %.3g at %lld (libattn %.9g, reference %.9g)", name, err,
                 (long long)at, (double)a[at], r[at]);
}

static void check_backward(const problem *pr, const grads *g)
{
    const ru_sdpa *p = &pr->p;
    ref_shape rs = ref_of(pr);
    double *r[3] = {ru_doubles(p->nq), ru_doubles(p->nk), ru_doubles(p->nv)};
    double *m[3] = {ru_doubles(p->nq), ru_doubles(p->nk), ru_doubles(p->nv)};
    assert_int_equal(ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr->d_out, 0, r[0], r[1],
                                       r[2]),
                     0);
    assert_int_equal(ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr->d_out, 1, m[0], m[1],
                                       m[2]),
                     0);
    char name[96];
    snprintf(name, sizeof name, "%s d_q", pr->c->name);
    check_grad(name, g->q, r[0], m[0], p->nq, p->D);
    snprintf(name, sizeof name, "%s d_k", pr->c->name);
    check_grad(name, g->k, r[1], m[1], p->nk, p->D);
    snprintf(name, sizeof name, "%s d_v", pr->c->name);
    check_grad(name, g->v, r[2], m[2], p->nv, p->Dv);
    for (int i = 0; i < 3; i++)
        free(r[i]), free(m[i]);
}

static void test_against_reference(void **state)
{
    const mod_case *c = *state;
    problem pr;
    problem_make(&pr, c);
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        ru_out fw;
        forward(&pr, threads[t], &fw);
        check_forward(&pr, &fw, threads[t] == 1 ? "1 thread" : "3 threads");
        grads g = backward(&pr, &fw, threads[t]);
        check_backward(&pr, &g);
        grads_free(&g);
        ru_out_free(&fw);
    }
    problem_free(&pr);
}

/* ---- 2. finite differences ------------------------------------------------ */

static double loss_of(void *arg)
{
    const problem *pr = arg;
    const ru_sdpa *p = &pr->p;
    ref_shape rs = ref_of(pr);
    double *out = ru_doubles(p->no);
    assert_int_equal(ref_sdpa(&rs, p->q, p->k, p->v, &p->rm, out, NULL, NULL), 0);
    double l = 0.0;
    for (int64_t i = 0; i < p->no; i++)
        l += (double)pr->d_out[i] * out[i];
    free(out);
    return l;
}

/* Every element of x: the reference's analytic gradient and libattn's
 * against central differences of the float64 loss. */
static void check_numeric(const char *name, problem *pr, float *x, int64_t n, int64_t row,
                          const double *ref, const double *mag, const float *lib)
{
    double *num = ru_doubles(n);
    for (int64_t i = 0; i < n; i++)
        num[i] = tu_central_difference(&x[i], 0x1p-13, loss_of, pr);
    int64_t at;
    float *ref_f = ru_floats(n);
    for (int64_t i = 0; i < n; i++)
        ref_f[i] = (float)ref[i];
    double e_ref = tu_max_err_scaled(ref_f, num, mag, n, row, &at);
    if (e_ref > 1e-6)
        fail_msg("%s: reference vs finite differences %.3g at %lld", name, e_ref, (long long)at);
    double e_lib = tu_max_err_scaled(lib, num, mag, n, row, &at);
    if (e_lib > TOL)
        fail_msg("%s: libattn vs finite differences %.3g at %lld", name, e_lib, (long long)at);
    print_message("%-4s vs finite differences: reference %.2g, libattn %.2g\n", name, e_ref,
                  e_lib);
    free(ref_f);
    free(num);
}

static void test_finite_differences(void **state)
{
    (void)state;
    const mod_case c = {"fd_all", 2, 4, 2, 6, 8, 3, 4, BHSD, BR, 2.5f, 1, 3, 1, 1.5f,
                        ALIBI_DEFAULT, MASK_LENGTHS, 101};
    problem pr;
    problem_make(&pr, &c);
    ru_sdpa *p = &pr.p;
    ru_out fw;
    forward(&pr, 1, &fw);
    grads g = backward(&pr, &fw, 1);
    ref_shape rs = ref_of(&pr);
    double *r[3] = {ru_doubles(p->nq), ru_doubles(p->nk), ru_doubles(p->nv)};
    double *m[3] = {ru_doubles(p->nq), ru_doubles(p->nk), ru_doubles(p->nv)};
    assert_int_equal(ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr.d_out, 0, r[0], r[1],
                                       r[2]),
                     0);
    assert_int_equal(ref_sdpa_backward(&rs, p->q, p->k, p->v, &p->rm, pr.d_out, 1, m[0], m[1],
                                       m[2]),
                     0);
    check_numeric("d_q", &pr, p->q, p->nq, c.D, r[0], m[0], g.q);
    check_numeric("d_k", &pr, p->k, p->nk, c.D, r[1], m[1], g.k);
    check_numeric("d_v", &pr, p->v, p->nv, c.Dv, r[2], m[2], g.v);
    for (int i = 0; i < 3; i++)
        free(r[i]), free(m[i]);
    grads_free(&g);
    ru_out_free(&fw);
    problem_free(&pr);
}

/* ---- 3. ALiBi = the explicit bias of Press et al.'s slopes ----------------- */

static void test_alibi_equals_explicit_bias(void **state)
{
    (void)state;
    for (int64_t heads = 1; heads <= 12; heads++) {
        const int64_t B = 1, Lq = 5, Lkv = 9;
        const mod_case c = {"alibi_bias", B, heads, 1, Lq, Lkv, 8, 8, BHSD, NONE, 0, 0, 0, 0, 0,
                            ALIBI_DEFAULT, MASK_NONE, 200 + (uint64_t)heads};
        problem pr;
        problem_make(&pr, &c);
        ru_out with_alibi, with_bias;
        forward(&pr, 1, &with_alibi);
        double *slopes = ru_doubles(heads);
        press_slopes(heads, slopes);
        float *bias = ru_floats(heads * Lq * Lkv);
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t j = 0; j < Lkv; j++)  /* p = i + Lkv − Lq without causal */
                    bias[(h * Lq + i) * Lkv + j] =
                        (float)(-slopes[h] * fabs((double)(i + Lkv - Lq - j)));
        attn_context *ctx = context(1);
        attn_sdpa *op = NULL;
        assert_int_equal(ru_sdpa_make_op(&pr.p, &op), ATTN_OK);
        attn_mask *mask = NULL;
        assert_int_equal(attn_mask_create(&mask), ATTN_OK);
        assert_int_equal(attn_mask_set_bias(mask, bias, 1, heads, Lq, Lkv), ATTN_OK);
        with_bias.out = ru_floats(pr.p.no), with_bias.w = ru_floats(pr.p.nw);
        with_bias.lse = ru_floats(pr.p.nl);
        assert_int_equal(attn_sdpa_forward(ctx, op, pr.p.q, pr.p.k, pr.p.v, mask, with_bias.out,
                                           with_bias.w, with_bias.lse),
                         ATTN_OK);
        for (int64_t i = 0; i < pr.p.nw; i++)
            if (fabsf(with_alibi.w[i] - with_bias.w[i]) > 1e-6f * (1.0f + fabsf(with_bias.w[i])))
                fail_msg("%lld heads: weight %lld: ALiBi %.9g, explicit bias %.9g",
                         (long long)heads, (long long)i, (double)with_alibi.w[i],
                         (double)with_bias.w[i]);
        attn_mask_destroy(mask);
        attn_sdpa_destroy(op);
        attn_context_destroy(ctx);
        free(bias), free(slopes);
        ru_out_free(&with_alibi);
        ru_out_free(&with_bias);
        problem_free(&pr);
    }
}

/* ---- 4. a window = the boolean mask of its keys, with dropout ---------------- */

static void test_window_equals_bool_mask_with_dropout(void **state)
{
    (void)state;
    const int64_t B = 2, H = 2, Lq = 70, Lkv = 90, D = 8, left = 13, right = 2;
    ru_sdpa p;
    ru_sdpa_init(&p, B, H, H, Lq, Lkv, D, D, BHSD, NONE, 0.0f, 301);
    uint8_t *keep = ru_alloc((size_t)(Lq * Lkv));
    for (int64_t i = 0; i < Lq; i++)
        for (int64_t j = 0; j < Lkv; j++) {
            int64_t pos = i + Lkv - Lq;
            keep[i * Lkv + j] = j >= pos - left && j <= pos + right;
        }
    attn_mask *mask = NULL;
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_bool(mask, keep, 1, 1, Lq, Lkv), ATTN_OK);
    attn_sdpa *win = NULL, *masked = NULL;
    assert_int_equal(ru_sdpa_make_op(&p, &win), ATTN_OK);
    assert_int_equal(ru_sdpa_make_op(&p, &masked), ATTN_OK);
    assert_int_equal(attn_sdpa_set_window(win, left, right), ATTN_OK);
    assert_int_equal(attn_sdpa_set_dropout(win, 0.3f, 77), ATTN_OK);
    assert_int_equal(attn_sdpa_set_dropout(masked, 0.3f, 77), ATTN_OK);
    attn_context *ctx = context(2);
    float *out[2], *w[2], *lse[2], *dq[2], *dk[2], *dv[2];
    float *d_out = ru_floats(p.no);
    tu_rng rng;
    tu_rng_seed(&rng, 302);
    tu_fill_normal(&rng, d_out, (size_t)p.no, 0.0f, 1.0f);
    for (int r = 0; r < 2; r++) {
        const attn_sdpa *op = r == 0 ? win : masked;
        const attn_mask *m = r == 0 ? NULL : mask;
        out[r] = ru_floats(p.no), w[r] = ru_floats(p.nw), lse[r] = ru_floats(p.nl);
        dq[r] = ru_floats(p.nq), dk[r] = ru_floats(p.nk), dv[r] = ru_floats(p.nv);
        assert_int_equal(attn_sdpa_forward(ctx, op, p.q, p.k, p.v, m, out[r], w[r], lse[r]),
                         ATTN_OK);
        assert_int_equal(attn_sdpa_backward(ctx, op, p.q, p.k, p.v, m, out[r], lse[r], d_out,
                                            dq[r], dk[r], dv[r]),
                         ATTN_OK);
    }
    /* The same keys, the same dropped weights: equal to rounding (the
     * window computes fewer keys per block, so its GEMMs differ). */
    int64_t zeros[2] = {0, 0};
    for (int r = 0; r < 2; r++)
        for (int64_t i = 0; i < p.nw; i++)
            zeros[r] += w[r][i] == 0.0f;
    assert_int_equal(zeros[0], zeros[1]);
    for (int64_t i = 0; i < p.nw; i++)
        if (fabsf(w[0][i] - w[1][i]) > 1e-6f * (1.0f + fabsf(w[1][i])))
            fail_msg("weight %lld: window %.9g, bool mask %.9g", (long long)i, (double)w[0][i],
                     (double)w[1][i]);
    const float *a[4] = {out[0], dq[0], dk[0], dv[0]}, *b[4] = {out[1], dq[1], dk[1], dv[1]};
    const int64_t n[4] = {p.no, p.nq, p.nk, p.nv};
    static const char *names[4] = {"out", "d_q", "d_k", "d_v"};
    for (int t = 0; t < 4; t++) {
        double *ref = ru_doubles(n[t]);
        for (int64_t i = 0; i < n[t]; i++)
            ref[i] = b[t][i];
        char name[64];
        snprintf(name, sizeof name, "window vs bool mask, dropout: %s", names[t]);
        assert_true(ru_close(name, a[t], ref, n[t], D, 1e-5));
        free(ref);
    }
    for (int r = 0; r < 2; r++)
        free(out[r]), free(w[r]), free(lse[r]), free(dq[r]), free(dk[r]), free(dv[r]);
    free(d_out), free(keep);
    attn_context_destroy(ctx);
    attn_sdpa_destroy(win);
    attn_sdpa_destroy(masked);
    attn_mask_destroy(mask);
    ru_sdpa_free(&p);
}

/* ---- 5. softcap = the capped logits given directly ------------------------ */

/* With K = the identity (dim_qk = len_kv) and scale 1, logit j of a query
 * is q[j]: a softcapped forward on q must equal a plain forward on
 * cap · tanh(q / cap). */
static void test_softcap_equals_capped_logits(void **state)
{
    (void)state;
    const int64_t Lq = 6, Lkv = 11, Dv = 5;
    const float cap = 2.5f;
    tu_rng rng;
    tu_rng_seed(&rng, 401);
    float *q = ru_floats(Lq * Lkv), *qc = ru_floats(Lq * Lkv), *k = ru_floats(Lkv * Lkv);
    float *v = ru_floats(Lkv * Dv);
    tu_fill_normal(&rng, q, (size_t)(Lq * Lkv), 0.0f, 4.0f);
    tu_fill_uniform(&rng, v, (size_t)(Lkv * Dv), -2.0f, 2.0f);
    for (int64_t i = 0; i < Lkv * Lkv; i++)
        k[i] = i % (Lkv + 1) == 0 ? 1.0f : 0.0f;
    for (int64_t i = 0; i < Lq * Lkv; i++)
        qc[i] = (float)(cap * tanh((double)q[i] / cap));
    attn_sdpa *capped = NULL, *plain = NULL;
    assert_int_equal(attn_sdpa_create(&capped, 1, 1, 1, Lq, Lkv, Lkv, Dv), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&plain, 1, 1, 1, Lq, Lkv, Lkv, Dv), ATTN_OK);
    assert_int_equal(attn_sdpa_set_scale(capped, 1.0f), ATTN_OK);
    assert_int_equal(attn_sdpa_set_scale(plain, 1.0f), ATTN_OK);
    assert_int_equal(attn_sdpa_set_softcap(capped, cap), ATTN_OK);
    attn_context *ctx = context(1);
    float *w[2] = {ru_floats(Lq * Lkv), ru_floats(Lq * Lkv)};
    float *out[2] = {ru_floats(Lq * Dv), ru_floats(Lq * Dv)};
    assert_int_equal(attn_sdpa_forward(ctx, capped, q, k, v, NULL, out[0], w[0], NULL), ATTN_OK);
    assert_int_equal(attn_sdpa_forward(ctx, plain, qc, k, v, NULL, out[1], w[1], NULL), ATTN_OK);
    for (int64_t i = 0; i < Lq * Lkv; i++)
        if (fabsf(w[0][i] - w[1][i]) > 2e-6f * (1.0f + fabsf(w[1][i])))
            fail_msg("weight %lld: softcap %.9g, capped logits %.9g", (long long)i,
                     (double)w[0][i], (double)w[1][i]);
    for (int r = 0; r < 2; r++)
        free(w[r]), free(out[r]);
    free(q), free(qc), free(k), free(v);
    attn_context_destroy(ctx);
    attn_sdpa_destroy(capped);
    attn_sdpa_destroy(plain);
}

/* ---- 6. a window changes the output; keys outside it are never read ------- */

static void test_window_changes_output_and_reads_nothing_outside(void **state)
{
    (void)state;
    const mod_case c = {"window_nan", 1, 2, 1, 40, 40, 8, 8, BSHD, TL, 0, 1, 9, 0, 0,
                        ALIBI_OFF, MASK_NONE, 501};
    problem pr;
    problem_make(&pr, &c);
    ru_out plain, windowed;
    assert_int_equal(ru_sdpa_run(&pr.p, 1, &plain), ATTN_OK);
    forward(&pr, 1, &windowed);
    double diff = 0.0;
    for (int64_t i = 0; i < pr.p.no; i++)
        diff = fmax(diff, fabs((double)plain.out[i] - windowed.out[i]));
    if (diff < 1e-3)
        fail_msg("a window of 10 keys over 40 changed the output by only %.3g", diff);
    ru_out_free(&plain);
    ru_out_free(&windowed);

    /* 10 queries at positions 30..39 with left = 9 see keys 21..39 at most;
     * keys 0..20, outside every window, are NaN and must not be read. */
    const mod_case tail = {"window_nan_tail", 1, 2, 1, 10, 40, 8, 8, BSHD, BR, 0, 1, 9, 0, 0,
                           ALIBI_OFF, MASK_NONE, 502};
    problem pt;
    problem_make(&pt, &tail);
    for (int64_t j = 0; j < 21; j++)
        for (int64_t d = 0; d < 8; d++) {
            pt.p.k[ref_index(BSHD, 1, 40, 8, 0, 0, j, d)] = NAN;
            pt.p.v[ref_index(BSHD, 1, 40, 8, 0, 0, j, d)] = NAN;
        }
    ru_out fw;
    forward(&pt, 2, &fw);
    check_forward(&pt, &fw, "NaN outside the window");
    assert_int_equal(tu_count_nonfinite(fw.out, pt.p.no), 0);
    grads g = backward(&pt, &fw, 2);
    assert_int_equal(tu_count_nonfinite(g.q, pt.p.nq), 0);
    for (int64_t j = 0; j < 40; j++)
        for (int64_t d = 0; d < 8; d++) {
            int64_t x = ref_index(BSHD, 1, 40, 8, 0, 0, j, d);
            if (j < 21 && (g.k[x] != 0.0f || g.v[x] != 0.0f))
                fail_msg("key %lld outside every window has d_k %g, d_v %g", (long long)j,
                         (double)g.k[x], (double)g.v[x]);
        }
    grads_free(&g);
    ru_out_free(&fw);
    problem_free(&pt);
    problem_free(&pr);
}

/* ---- 7. the multi-head layer ------------------------------------------------ */

enum { E = 16, NH = 4, NKV = 2, MB = 2, LQ = 7, LKV = 7 };

typedef struct mha_problem {
    attn_mha *mha;
    float *w[4], *b[4], *x, *d_out;
    ref_mods rmods;
    float slopes[NH];
} mha_problem;

static void mha_make(mha_problem *mp)
{
    memset(mp, 0, sizeof *mp);
    tu_rng rng;
    tu_rng_seed(&rng, 601);
    const int64_t rows[4] = {E, NKV * E / NH, NKV * E / NH, E};
    assert_int_equal(attn_mha_create(&mp->mha, E, NH, NKV, E, E, 1), ATTN_OK);
    for (int p = 0; p < 4; p++) {
        mp->w[p] = ru_floats(rows[p] * E), mp->b[p] = ru_floats(rows[p]);
        tu_fill_normal(&rng, mp->w[p], (size_t)(rows[p] * E), 0.0f, 0.5f);
        tu_fill_normal(&rng, mp->b[p], (size_t)rows[p], 0.0f, 0.1f);
        assert_int_equal(attn_mha_set_weights(mp->mha, (attn_proj)p, mp->w[p], mp->b[p]),
                         ATTN_OK);
    }
    mp->x = ru_floats(MB * LQ * E), mp->d_out = ru_floats(MB * LQ * E);
    tu_fill_normal(&rng, mp->x, MB * LQ * E, 0.0f, 1.0f);
    tu_fill_normal(&rng, mp->d_out, MB * LQ * E, 0.0f, 1.0f);
    for (int h = 0; h < NH; h++)
        mp->slopes[h] = 0.1f * (float)(h + 1);
    assert_int_equal(attn_mha_set_causal(mp->mha, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
    assert_int_equal(attn_mha_set_window(mp->mha, 2, 0), ATTN_OK);
    assert_int_equal(attn_mha_set_softcap(mp->mha, 1.5f), ATTN_OK);
    assert_int_equal(attn_mha_set_alibi(mp->mha, mp->slopes), ATTN_OK);
    mp->rmods = (ref_mods){.window = 1, .left = 2, .right = 0, .softcap = 1.5,
                           .alibi = mp->slopes};
}

static void mha_free(mha_problem *mp)
{
    attn_mha_destroy(mp->mha);
    for (int p = 0; p < 4; p++)
        free(mp->w[p]), free(mp->b[p]);
    free(mp->x), free(mp->d_out);
}

static ru_mha mha_ref(const mha_problem *mp)
{
    return (ru_mha){.embed = E, .heads = NH, .kv_heads = NKV, .kdim = E, .vdim = E,
                    .causal = ATTN_CAUSAL_TOP_LEFT,
                    .w = {mp->w[0], mp->w[1], mp->w[2], mp->w[3]},
                    .b = {mp->b[0], mp->b[1], mp->b[2], mp->b[3]}, .mods = &mp->rmods};
}

static void test_mha_modifiers(void **state)
{
    (void)state;
    mha_problem mp;
    mha_make(&mp);
    attn_context *ctx = context(2);
    float *out = ru_floats(MB * LQ * E), *w = ru_floats(MB * NH * LQ * LKV);
    attn_activations *act = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_mha_forward_train(ctx, mp.mha, MB, LQ, LKV, mp.x, mp.x, mp.x, NULL,
                                            out, w, act),
                     ATTN_OK);
    ru_mha m = mha_ref(&mp);
    double *rout = ru_doubles(MB * LQ * E), *rw = ru_doubles(MB * NH * LQ * LKV);
    ru_ref_mha(&m, MB, LQ, LKV, mp.x, mp.x, mp.x, NULL, rout, rw);
    assert_true(ru_close("mha out", out, rout, MB * LQ * E, E, TOL));
    assert_true(ru_close("mha weights", w, rw, MB * NH * LQ * LKV, LKV, TOL));

    /* Self-attention: one buffer receives d_query + d_key + d_value. */
    float *dx = ru_floats(MB * LQ * E);
    assert_int_equal(attn_mha_backward(ctx, mp.mha, act, mp.d_out, dx, dx, dx, NULL), ATTN_OK);
    int64_t at;
    double worst = ru_mha_self_grad_error(&m, MB, LQ, mp.x, mp.d_out, dx, &at);
    if (!(worst <= 1e-4))
        fail_msg("mha d_x[%lld]: error %.3g against finite differences", (long long)at, worst);
    print_message("mha with window, softcap, ALiBi: d_x vs finite differences %.2g\n", worst);

    /* A modifier changed since the forward: the tape is stale. */
    assert_int_equal(attn_mha_set_softcap(mp.mha, 2.0f), ATTN_OK);
    assert_int_equal(attn_mha_backward(ctx, mp.mha, act, mp.d_out, dx, dx, dx, NULL),
                     ATTN_ERR_STATE);
    free(out), free(w), free(rout), free(rw), free(dx);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    mha_free(&mp);
}

/* ---- 8. errors ------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    const mod_case c = {"errors", 1, 2, 1, 5, 7, 8, 8, BHSD, NONE, 0, 1, 1, 0, 0.0f, ALIBI_OFF,
                        MASK_NONE, 701};
    problem pr;
    problem_make(&pr, &c);
    attn_sdpa *op = make_op(&pr);  /* window (1, 0) */
    ru_out before;
    forward(&pr, 1, &before);

    assert_int_equal(attn_sdpa_set_window(NULL, 1, 1), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_set_window(op, -2, 0), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "left"));
    assert_int_equal(attn_sdpa_set_window(op, 0, -5), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "right"));
    assert_int_equal(attn_sdpa_set_softcap(NULL, 1.0f), ATTN_ERR_NULL_POINTER);
    const float bad_caps[3] = {-1.0f, NAN, INFINITY};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(attn_sdpa_set_softcap(op, bad_caps[i]), ATTN_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(attn_last_error(), "cap"));
    }
    const float bad_slopes[2] = {0.5f, NAN};
    assert_int_equal(attn_sdpa_set_alibi(op, bad_slopes), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "slopes[1]"));
    assert_int_equal(attn_sdpa_set_alibi(NULL, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_clear_alibi(NULL), ATTN_ERR_NULL_POINTER);

    /* The failures changed nothing: the same bits as before them. */
    attn_context *ctx = context(1);
    ru_out after;
    assert_int_equal(ru_sdpa_run_on(ctx, op, &pr.p, &after), ATTN_OK);
    assert_true(ru_same_bits("out after failed setters", after.out, before.out, pr.p.no));
    /* ALiBi on, then off again: the bits of no ALiBi. */
    ru_out cleared;
    assert_int_equal(attn_sdpa_set_alibi(op, NULL), ATTN_OK);
    assert_int_equal(attn_sdpa_clear_alibi(op), ATTN_OK);
    assert_int_equal(ru_sdpa_run_on(ctx, op, &pr.p, &cleared), ATTN_OK);
    assert_true(ru_same_bits("out after clear_alibi", cleared.out, before.out, pr.p.no));

    attn_mha *mha = NULL;
    assert_int_equal(attn_mha_create(&mha, 8, 2, 1, 8, 8, 1), ATTN_OK);
    assert_int_equal(attn_mha_set_window(NULL, 1, 1), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_set_window(mha, 1, -2), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mha_set_softcap(mha, -0.5f), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mha_set_alibi(mha, bad_slopes), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mha_set_softcap(NULL, 1.0f), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_set_alibi(NULL, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_clear_alibi(NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_set_alibi(mha, NULL), ATTN_OK);
    assert_int_equal(attn_mha_clear_alibi(mha), ATTN_OK);
    attn_mha_destroy(mha);

    ru_out_free(&before), ru_out_free(&after), ru_out_free(&cleared);
    attn_context_destroy(ctx);
    attn_sdpa_destroy(op);
    problem_free(&pr);
}

int main(void)
{
    struct CMUnitTest tests[N_CASES + 7];
    for (size_t i = 0; i < N_CASES; i++)
        tests[i] = (struct CMUnitTest){cases[i].name, test_against_reference, NULL, NULL,
                                       (void *)&cases[i]};
    const struct CMUnitTest more[7] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_alibi_equals_explicit_bias),
        cmocka_unit_test(test_window_equals_bool_mask_with_dropout),
        cmocka_unit_test(test_softcap_equals_capped_logits),
        cmocka_unit_test(test_window_changes_output_and_reads_nothing_outside),
        cmocka_unit_test(test_mha_modifiers),
        cmocka_unit_test(test_errors),
    };
    memcpy(tests + N_CASES, more, sizeof more);
    return cmocka_run_group_tests_name("score modifiers", tests, NULL, NULL);
}
