/*
 * test_rope.c — attn_rope against float64 references (test_util.c's
 * ref_rope_row: HF transformers' apply_rotary_pos_emb with rotate_half for
 * the half style, Meta's complex form for the interleaved one):
 *
 *  1. both styles, full and partial rotary dims, both layouts, explicit
 *     positions up to 10^6 and a start, on 1 and 3 threads;
 *  2. linear and Llama-3 scaling (the latter from HF's
 *     _compute_llama3_parameters, written here in double), caller-given
 *     inv_freq and cos/sin tables;
 *  3. the inverse undoes the rotation and is its transpose
 *     (<R x, y> = <x, R⁻¹ y>), so it is the backward;
 *  4. the multi-head layer with RoPE against the float64 layer with RoPE,
 *     its backward against finite differences of that layer, and the
 *     ATTN_ERR_STATE and shape rules of attn_mha_set_rope;
 *  5. errors, each leaving x untouched.
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

#define TOL 1e-6

typedef struct rope_case {
    const char *name;
    int64_t B, H, S, D, rotary_dim;
    attn_rope_style style;
    attn_layout layout;
    int positions;        /* 0: start; 1: random positions up to 10^6 */
    int64_t start;
    float base;
} rope_case;

static const rope_case cases[] = {
    {"half_full_bhsd", 2, 3, 5, 16, 16, ATTN_ROPE_HALF, ATTN_LAYOUT_BHSD, 0, 0, 10000.0f},
    {"half_partial_bshd", 2, 4, 6, 16, 8, ATTN_ROPE_HALF, ATTN_LAYOUT_BSHD, 1, 0, 10000.0f},
    {"interleaved_full_bshd", 2, 2, 7, 8, 8, ATTN_ROPE_INTERLEAVED, ATTN_LAYOUT_BSHD, 1, 0,
     10000.0f},
    {"interleaved_partial_bhsd", 1, 3, 9, 12, 6, ATTN_ROPE_INTERLEAVED, ATTN_LAYOUT_BHSD, 0,
     999990, 500000.0f},
    {"half_far_start", 1, 2, 10, 128, 128, ATTN_ROPE_HALF, ATTN_LAYOUT_BSHD, 0, 1000000 - 9,
     500000.0f},
    {"half_many_positions", 3, 8, 200, 64, 32, ATTN_ROPE_HALF, ATTN_LAYOUT_BHSD, 1, 0,
     10000.0f},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* Index of (b, h, s, 0). */
static int64_t row_of(const rope_case *c, int64_t b, int64_t h, int64_t s)
{
    return ref_index(c->layout == ATTN_LAYOUT_BSHD ? REF_BSHD : REF_BHSD, c->H, c->S, c->D, b, h,
                     s, 0);
}

static attn_context *context(int threads)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    if (threads > 0)
        assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    return ctx;
}

/* The reference of x rotated with inv_freq at the case's positions. */
static double *reference(const rope_case *c, const float *x, const int64_t *pos,
                         const double *inv_freq, int inverse)
{
    int64_t n = c->B * c->H * c->S * c->D;
    double *r = ru_doubles(n);
    for (int64_t i = 0; i < n; i++)
        r[i] = x[i];
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t s = 0; s < c->S; s++) {
                double p = (double)(pos ? pos[b * c->S + s] : c->start + s);
                ref_rope_row(r + row_of(c, b, h, s), c->style == ATTN_ROPE_INTERLEAVED,
                             c->rotary_dim, inv_freq, p, inverse);
            }
    return r;
}

static int64_t *make_positions(const rope_case *c, tu_rng *rng)
{
    if (!c->positions)
        return NULL;
    int64_t *pos = ru_alloc((size_t)(c->B * c->S) * sizeof *pos);
    for (int64_t i = 0; i < c->B * c->S; i++)
        pos[i] = tu_randint(rng, 0, 1000000);
    pos[0] = 1000000;
    return pos;
}

static void check(const char *what, const rope_case *c, const float *a, const double *r)
{
    char name[128];
    snprintf(name, sizeof name, "%s: %s", c->name, what);
    assert_true(ru_close(name, a, r, c->B * c->H * c->S * c->D, c->D, TOL));
}

/* ---- 1. against the references -------------------------------------------- */

static void test_against_reference(void **state)
{
    const rope_case *c = *state;
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    int64_t n = c->B * c->H * c->S * c->D;
    float *x = ru_floats(n), *y = ru_floats(n);
    tu_fill_normal(&rng, x, (size_t)n, 0.0f, 1.0f);
    int64_t *pos = make_positions(c, &rng);
    double *inv_freq = ru_doubles(c->rotary_dim / 2);
    ref_rope_inv_freq(c->base, c->rotary_dim, inv_freq);
    double *r = reference(c, x, pos, inv_freq, 0);
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(&rope, c->D, c->rotary_dim, c->base, c->style), ATTN_OK);
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        attn_context *ctx = context(threads[t]);
        memcpy(y, x, (size_t)n * sizeof *y);
        assert_int_equal(attn_rope_apply(ctx, rope, c->layout, c->B, c->H, c->S, y, pos,
                                         c->start, 0),
                         ATTN_OK);
        check(threads[t] == 1 ? "rotated, 1 thread" : "rotated, 3 threads", c, y, r);
        /* The features past rotary_dim are left exactly as they were. */
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->H; h++)
                for (int64_t s = 0; s < c->S; s++)
                    for (int64_t d = c->rotary_dim; d < c->D; d++)
                        assert_true(y[row_of(c, b, h, s) + d] == x[row_of(c, b, h, s) + d]);
        /* The inverse brings x back (to rounding). */
        assert_int_equal(attn_rope_apply(ctx, rope, c->layout, c->B, c->H, c->S, y, pos,
                                         c->start, 1),
                         ATTN_OK);
        double *xd = ru_doubles(n);
        for (int64_t i = 0; i < n; i++)
            xd[i] = x[i];
        check("rotated and back", c, y, xd);
        free(xd);
        attn_context_destroy(ctx);
    }
    free(r), free(inv_freq), free(pos), free(x), free(y);
    attn_rope_destroy(rope);
}

/* ---- 2. frequency sources ----------------------------------------------------- */

/* HF's _compute_llama3_parameters, in double. */
static void llama3_ref(double *inv_freq, int64_t n, double factor, double low, double high,
                       double original)
{
    double low_wavelen = original / low, high_wavelen = original / high;
    for (int64_t i = 0; i < n; i++) {
        double wavelen = 2.0 * acos(-1.0) / inv_freq[i];
        double scaled = wavelen > low_wavelen ? inv_freq[i] / factor : inv_freq[i];
        double smooth = (original / wavelen - low) / (high - low);
        double smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
        int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv_freq[i] = medium ? smoothed : scaled;
    }
}

static void run_and_check(const char *what, const rope_case *c, attn_rope *rope,
                          const double *inv_freq)
{
    tu_rng rng;
    tu_rng_seed(&rng, 21);
    int64_t n = c->B * c->H * c->S * c->D;
    float *x = ru_floats(n), *y = ru_floats(n);
    tu_fill_normal(&rng, x, (size_t)n, 0.0f, 1.0f);
    int64_t *pos = make_positions(c, &rng);
    double *r = reference(c, x, pos, inv_freq, 0);
    attn_context *ctx = context(2);
    memcpy(y, x, (size_t)n * sizeof *y);
    assert_int_equal(
        attn_rope_apply(ctx, rope, c->layout, c->B, c->H, c->S, y, pos, c->start, 0), ATTN_OK);
    check(what, c, y, r);
    attn_context_destroy(ctx);
    free(r), free(pos), free(x), free(y);
}

static void test_frequency_sources(void **state)
{
    (void)state;
    const rope_case c = {"sources", 2, 2, 9, 128, 128, ATTN_ROPE_HALF, ATTN_LAYOUT_BSHD, 1, 0,
                         500000.0f};
    int64_t pairs = c.rotary_dim / 2;
    double *f = ru_doubles(pairs);
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(&rope, c.D, c.rotary_dim, c.base, c.style), ATTN_OK);

    ref_rope_inv_freq(c.base, c.rotary_dim, f);
    for (int64_t i = 0; i < pairs; i++)
        f[i] /= 4.0;
    assert_int_equal(attn_rope_set_linear_scaling(rope, 4.0f), ATTN_OK);
    run_and_check("linear scaling 4", &c, rope, f);

    ref_rope_inv_freq(c.base, c.rotary_dim, f);
    llama3_ref(f, pairs, 8.0, 1.0, 4.0, 8192.0);
    int64_t scaled = 0, kept = 0, blended = 0;  /* the three regions are exercised */
    for (int64_t i = 0; i < pairs; i++) {
        double plain = 1.0 / pow(c.base, (double)(2 * i) / (double)c.rotary_dim);
        scaled += fabs(f[i] - plain / 8.0) < 1e-15 * plain;
        kept += f[i] == plain;
        blended += f[i] != plain && fabs(f[i] - plain / 8.0) >= 1e-15 * plain;
    }
    assert_true(scaled > 0 && kept > 0 && blended > 0);
    assert_int_equal(attn_rope_set_llama3_scaling(rope, 8.0f, 1.0f, 4.0f, 8192), ATTN_OK);
    run_and_check("llama3 scaling", &c, rope, f);

    float *mine = ru_floats(pairs);
    for (int64_t i = 0; i < pairs; i++) {
        mine[i] = (float)(0.5 / (double)(i + 1));
        f[i] = mine[i];
    }
    assert_int_equal(attn_rope_set_inv_freq(rope, mine), ATTN_OK);
    run_and_check("caller's inv_freq", &c, rope, f);

    /* Tables of cos and sin of the caller's angles: the same rotation. */
    const rope_case small = {"tables", 2, 3, 6, 8, 8, ATTN_ROPE_INTERLEAVED, ATTN_LAYOUT_BHSD, 0,
                             20, 10000.0f};
    attn_rope *tr = NULL;
    assert_int_equal(attn_rope_create(&tr, small.D, small.rotary_dim, small.base, small.style),
                     ATTN_OK);
    double tf[4] = {0.9, 0.3, 0.1, 0.01};
    float *cos_t = ru_floats(40 * 4), *sin_t = ru_floats(40 * 4);
    for (int64_t p = 0; p < 40; p++)
        for (int64_t i = 0; i < 4; i++) {
            cos_t[p * 4 + i] = (float)cos((double)p * tf[i]);
            sin_t[p * 4 + i] = (float)sin((double)p * tf[i]);
        }
    assert_int_equal(attn_rope_set_tables(tr, cos_t, sin_t, 40), ATTN_OK);
    run_and_check("cos/sin tables", &small, tr, tf);
    /* Positions 20..25 are in the tables; 35..40 are not. */
    attn_context *ctx = context(1);
    float *x = ru_floats(2 * 3 * 6 * 8);
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    tu_fill_uniform(&rng, x, 2 * 3 * 6 * 8, -1.0f, 1.0f);
    float *copy = ru_floats(2 * 3 * 6 * 8);
    memcpy(copy, x, 2 * 3 * 6 * 8 * sizeof *x);
    assert_int_equal(attn_rope_apply(ctx, tr, ATTN_LAYOUT_BHSD, 2, 3, 6, x, NULL, 35, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "tables"));
    assert_true(ru_same_bits("x after a failed apply", x, copy, 2 * 3 * 6 * 8));
    int64_t bad_pos[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 40, 11};
    assert_int_equal(attn_rope_apply(ctx, tr, ATTN_LAYOUT_BHSD, 2, 3, 6, x, bad_pos, 0, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "positions[10]"));
    assert_true(ru_same_bits("x after a failed apply", x, copy, 2 * 3 * 6 * 8));
    attn_context_destroy(ctx);
    free(x), free(copy), free(cos_t), free(sin_t), free(mine), free(f);
    attn_rope_destroy(tr);
    attn_rope_destroy(rope);
}

/* ---- 3. the inverse is the transpose --------------------------------------------- */

static void test_inverse_is_transpose(void **state)
{
    (void)state;
    const int64_t B = 2, H = 3, S = 7, D = 10, n = B * H * S * D;
    tu_rng rng;
    tu_rng_seed(&rng, 31);
    float *x = ru_floats(n), *y = ru_floats(n), *rx = ru_floats(n), *ry = ru_floats(n);
    tu_fill_normal(&rng, x, (size_t)n, 0.0f, 1.0f);
    tu_fill_normal(&rng, y, (size_t)n, 0.0f, 1.0f);
    memcpy(rx, x, (size_t)n * sizeof *x);
    memcpy(ry, y, (size_t)n * sizeof *y);
    int64_t pos[2 * 7];
    for (int i = 0; i < 14; i++)
        pos[i] = tu_randint(&rng, 0, 5000);
    const attn_rope_style styles[2] = {ATTN_ROPE_HALF, ATTN_ROPE_INTERLEAVED};
    for (int s = 0; s < 2; s++) {
        attn_rope *rope = NULL;
        assert_int_equal(attn_rope_create(&rope, D, 8, 10000.0f, styles[s]), ATTN_OK);
        attn_context *ctx = context(2);
        memcpy(rx, x, (size_t)n * sizeof *x);
        memcpy(ry, y, (size_t)n * sizeof *y);
        assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BSHD, B, H, S, rx, pos, 0, 0),
                         ATTN_OK);
        assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BSHD, B, H, S, ry, pos, 0, 1),
                         ATTN_OK);
        double lhs = 0.0, rhs = 0.0, scale = 0.0;
        for (int64_t i = 0; i < n; i++) {
            lhs += (double)rx[i] * y[i];
            rhs += (double)x[i] * ry[i];
            scale += fabs((double)x[i] * y[i]);
        }
        if (fabs(lhs - rhs) > 1e-6 * scale)
            fail_msg("style %d: <R x, y> = %.9g but <x, R^-1 y> = %.9g", s, lhs, rhs);
        attn_context_destroy(ctx);
        attn_rope_destroy(rope);
    }
    free(x), free(y), free(rx), free(ry);
}

/* ---- 4. the multi-head layer ------------------------------------------------------- */

enum { E = 24, NH = 4, NKV = 2, MB = 2, L = 6 };

typedef struct mha_problem {
    attn_mha *mha;
    float *w[4], *b[4], *x, *d_out;
    attn_causal causal;
} mha_problem;

static ru_mha mha_ref(const mha_problem *mp)
{
    return (ru_mha){.embed = E, .heads = NH, .kv_heads = NKV, .kdim = E, .vdim = E,
                    .causal = mp->causal, .w = {mp->w[0], mp->w[1], mp->w[2], mp->w[3]},
                    .b = {mp->b[0], mp->b[1], mp->b[2], mp->b[3]}, .rope_dim = 4,
                    .rope_style = 0, .rope_base = 100.0};
}

static void test_mha_rope(void **state)
{
    (void)state;
    mha_problem mp = {.causal = ATTN_CAUSAL_TOP_LEFT};
    tu_rng rng;
    tu_rng_seed(&rng, 41);
    const int64_t rows[4] = {E, NKV * E / NH, NKV * E / NH, E};
    assert_int_equal(attn_mha_create(&mp.mha, E, NH, NKV, E, E, 1), ATTN_OK);
    for (int p = 0; p < 4; p++) {
        mp.w[p] = ru_floats(rows[p] * E), mp.b[p] = ru_floats(rows[p]);
        tu_fill_normal(&rng, mp.w[p], (size_t)(rows[p] * E), 0.0f, 0.4f);
        tu_fill_normal(&rng, mp.b[p], (size_t)rows[p], 0.0f, 0.1f);
        assert_int_equal(attn_mha_set_weights(mp.mha, (attn_proj)p, mp.w[p], mp.b[p]), ATTN_OK);
    }
    assert_int_equal(attn_mha_set_causal(mp.mha, mp.causal), ATTN_OK);
    mp.x = ru_floats(MB * L * E), mp.d_out = ru_floats(MB * L * E);
    tu_fill_normal(&rng, mp.x, MB * L * E, 0.0f, 1.0f);
    tu_fill_normal(&rng, mp.d_out, MB * L * E, 0.0f, 1.0f);

    attn_rope *wrong = NULL, *rope = NULL;
    assert_int_equal(attn_rope_create(&wrong, 8, 4, 100.0f, ATTN_ROPE_HALF), ATTN_OK);
    assert_int_equal(attn_mha_set_rope(mp.mha, wrong), ATTN_ERR_SHAPE_MISMATCH);
    assert_int_equal(attn_rope_create(&rope, E / NH, 4, 100.0f, ATTN_ROPE_HALF), ATTN_OK);
    assert_int_equal(attn_mha_set_rope(mp.mha, rope), ATTN_OK);
    attn_rope_destroy(rope);  /* the layer has its own copy */
    attn_rope_destroy(wrong);

    attn_context *ctx = context(2);
    float *out = ru_floats(MB * L * E);
    attn_activations *act = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_mha_forward_train(ctx, mp.mha, MB, L, L, mp.x, mp.x, mp.x, NULL, out,
                                            NULL, act),
                     ATTN_OK);
    ru_mha m = mha_ref(&mp);
    double *rout = ru_doubles(MB * L * E);
    ru_ref_mha(&m, MB, L, L, mp.x, mp.x, mp.x, NULL, rout, NULL);
    assert_true(ru_close("mha with rope: out", out, rout, MB * L * E, E, 1e-5));
    /* The inference forward gives the same numbers. */
    float *out2 = ru_floats(MB * L * E);
    assert_int_equal(
        attn_mha_forward(ctx, mp.mha, MB, L, L, mp.x, mp.x, mp.x, NULL, out2, NULL), ATTN_OK);
    assert_true(ru_same_bits("mha with rope: inference vs training forward", out2, out,
                             MB * L * E));

    float *dx = ru_floats(MB * L * E);
    assert_int_equal(attn_mha_backward(ctx, mp.mha, act, mp.d_out, dx, dx, dx, NULL), ATTN_OK);
    int64_t at;
    double worst = ru_mha_self_grad_error(&m, MB, L, mp.x, mp.d_out, dx, &at);
    if (!(worst <= 1e-4))
        fail_msg("mha with rope d_x[%lld]: error %.3g against finite differences",
                 (long long)at, worst);
    print_message("mha with rope: d_x vs finite differences %.2g\n", worst);

    /* Removing the rope makes the tape stale and changes the output. */
    assert_int_equal(attn_mha_set_rope(mp.mha, NULL), ATTN_OK);
    assert_int_equal(attn_mha_backward(ctx, mp.mha, act, mp.d_out, dx, dx, dx, NULL),
                     ATTN_ERR_STATE);
    assert_int_equal(
        attn_mha_forward(ctx, mp.mha, MB, L, L, mp.x, mp.x, mp.x, NULL, out2, NULL), ATTN_OK);
    double diff = 0.0;
    for (int64_t i = 0; i < MB * L * E; i++)
        diff = fmax(diff, fabs((double)out2[i] - out[i]));
    assert_true(diff > 1e-3);

    free(out), free(out2), free(rout), free(dx);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    attn_mha_destroy(mp.mha);
    for (int p = 0; p < 4; p++)
        free(mp.w[p]), free(mp.b[p]);
    free(mp.x), free(mp.d_out);
}

/* ---- 5. errors ------------------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(NULL, 8, 8, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_create(&rope, 1, 2, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_create(&rope, 8, 7, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "rotary_dim"));
    assert_int_equal(attn_rope_create(&rope, 8, 10, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_create(&rope, 8, 0, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_create(&rope, 8, 8, 1.0f, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_create(&rope, 8, 8, NAN, ATTN_ROPE_HALF),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_create(&rope, 8, 8, 10000.0f, (attn_rope_style)2),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "style"));
    assert_null(rope);
    assert_int_equal(attn_rope_create(&rope, 8, 4, 10000.0f, ATTN_ROPE_HALF), ATTN_OK);

    assert_int_equal(attn_rope_set_linear_scaling(NULL, 2.0f), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_set_linear_scaling(rope, 0.0f), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_set_linear_scaling(rope, INFINITY), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_set_llama3_scaling(NULL, 8, 1, 4, 8192), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_set_llama3_scaling(rope, -8, 1, 4, 8192),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_set_llama3_scaling(rope, 8, 0, 4, 8192),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_set_llama3_scaling(rope, 8, 4, 4, 8192),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "high_freq_factor"));
    assert_int_equal(attn_rope_set_llama3_scaling(rope, 8, 1, 4, 0), ATTN_ERR_INVALID_ARGUMENT);
    const float bad_freq[2] = {1.0f, NAN};
    assert_int_equal(attn_rope_set_inv_freq(rope, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_set_inv_freq(rope, bad_freq), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "inv_freq[1]"));
    const float table[4] = {1.0f, 0.5f, 0.0f, INFINITY};
    assert_int_equal(attn_rope_set_tables(rope, table, table, 0), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_set_tables(rope, NULL, table, 1), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_set_tables(rope, table, NULL, 1), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_set_tables(rope, table, table, 2), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "cos[3]"));

    attn_context *ctx = context(1);
    float x[2 * 3 * 8];
    for (int i = 0; i < 48; i++)
        x[i] = (float)i;
    float copy[48];
    memcpy(copy, x, sizeof x);
    assert_int_equal(attn_rope_apply(NULL, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, x, NULL, 0, 0),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_apply(ctx, NULL, ATTN_LAYOUT_BHSD, 1, 2, 3, x, NULL, 0, 0),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, NULL, NULL, 0, 0),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_rope_apply(ctx, rope, (attn_layout)7, 1, 2, 3, x, NULL, 0, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, x, NULL, 0, 2),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, -1, 2, 3, x, NULL, 0, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 0, 3, x, NULL, 0, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, x, NULL,
                                     INT64_MAX - 1, 0),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_true(ru_same_bits("x after failed applies", x, copy, 48));
    /* Empty tensors: nothing to do, NULL allowed. */
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 0, 2, 3, NULL, NULL, 0, 0),
                     ATTN_OK);
    /* Negative positions rotate backwards with angles: R(−p) = R(p)⁻¹. */
    int64_t neg[3] = {-5, -6, -7}, posv[3] = {5, 6, 7};
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, x, neg, 0, 0),
                     ATTN_OK);
    assert_int_equal(attn_rope_apply(ctx, rope, ATTN_LAYOUT_BHSD, 1, 2, 3, x, posv, 0, 0),
                     ATTN_OK);
    for (int i = 0; i < 48; i++)
        assert_true(fabsf(x[i] - copy[i]) <= 1e-5f * (1.0f + fabsf(copy[i])));
    attn_rope_destroy(NULL);
    attn_context_destroy(ctx);
    attn_rope_destroy(rope);
}

int main(void)
{
    struct CMUnitTest tests[N_CASES + 4];
    for (size_t i = 0; i < N_CASES; i++)
        tests[i] = (struct CMUnitTest){cases[i].name, test_against_reference, NULL, NULL,
                                       (void *)&cases[i]};
    const struct CMUnitTest more[4] = {
        cmocka_unit_test(test_frequency_sources),
        cmocka_unit_test(test_inverse_is_transpose),
        cmocka_unit_test(test_mha_rope),
        cmocka_unit_test(test_errors),
    };
    memcpy(tests + N_CASES, more, sizeof more);
    return cmocka_run_group_tests_name("rope", tests, NULL, NULL);
}
