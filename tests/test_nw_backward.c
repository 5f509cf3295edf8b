/*
 * test_nw_backward.c — attn_nadaraya_watson_backward against float64:
 *
 *  1. central finite differences of a float64 Nadaraya–Watson forward
 *     written here from D2L eq. 10.2.6 (softmax of −((x − x_i)·w)²/2), for
 *     every query, key and value and for w, on D2L §10.2's data (50 points
 *     of y = 2 sin x + x^0.8 + noise, each training input attending to the
 *     other 49) and on random data with several widths;
 *  2. NULL outputs are not computed, and the others keep their bits;
 *  3. n_keys = 0 gives zero gradients; a far-away query gets finite ones;
 *  4. the error model: statuses, messages, untouched outputs, overlaps.
 * Errors are |lib − num| / max(max |num| over the tensor, 1e-6); for d_queries
 * and d_w, whose terms cancel, the sum of the terms' sizes if larger.
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

#include "test_util.h"

#define TOL 1e-5

/* out_i = Σ_j softmax_j(−((x_i − k_j)·w)²/2) v_j in double; L = Σ d_i out_i. */
static double loss(int64_t nq, int64_t nk, const double *x, const double *k, const double *v,
                   double w, const double *d)
{
    double l = 0.0;
    for (int64_t i = 0; i < nq; i++) {
        double m = -INFINITY, sum = 0.0, acc = 0.0;
        for (int64_t j = 0; j < nk; j++) {
            double t = (x[i] - k[j]) * w, s = -0.5 * t * t;
            m = s > m ? s : m;
        }
        for (int64_t j = 0; j < nk; j++) {
            double t = (x[i] - k[j]) * w, e = exp(-0.5 * t * t - m);
            sum += e, acc += e * v[j];
        }
        l += nk > 0 ? d[i] * acc / sum : 0.0;
    }
    return l;
}

/* Central difference of loss in element `at` of `which` (0 x, 1 k, 2 v,
 * 3 w), step h relative to the element's size. */
static double numeric(int64_t nq, int64_t nk, double *x, double *k, double *v, double *w,
                      const double *d, int which, int64_t at)
{
    double *p = which == 0 ? &x[at] : which == 1 ? &k[at] : which == 2 ? &v[at] : w;
    double x0 = *p, h = 1e-5 * (fabs(x0) + 1e-2);
    *p = x0 + h;
    double lp = loss(nq, nk, x, k, v, *w, d);
    *p = x0 - h;
    double lm = loss(nq, nk, x, k, v, *w, d);
    *p = x0;
    return (lp - lm) / (2.0 * h);
}

/* The sizes of the terms that d_queries_i and d_w sum, which cancel (Σ_j
 * a_ij (v_j − out_i) = 0): Σ_j a_ij |d_i| |v_j − out_i| |x_i − k_j| w² and
 * Σ_ij a_ij |d_i| |v_j − out_i| (x_i − k_j)² |w|. float weights carry a
 * relative error, so these are the scale a float result is judged by. */
static void term_magnitudes(int64_t nq, int64_t nk, const double *x, const double *k,
                            const double *v, double w, const double *d, double *mq, double *mw)
{
    *mw = 0.0;
    double *a = malloc((size_t)(nk > 0 ? nk : 1) * sizeof *a);
    assert_non_null(a);
    for (int64_t i = 0; i < nq; i++) {
        double m = -INFINITY, sum = 0.0, out = 0.0;
        for (int64_t j = 0; j < nk; j++) {
            double t = (x[i] - k[j]) * w;
            a[j] = -0.5 * t * t;
            m = a[j] > m ? a[j] : m;
        }
        for (int64_t j = 0; j < nk; j++)
            a[j] = exp(a[j] - m), sum += a[j];
        for (int64_t j = 0; j < nk; j++)
            a[j] /= sum, out += a[j] * v[j];
        mq[i] = 0.0;
        for (int64_t j = 0; j < nk; j++) {
            double t = a[j] * fabs(d[i]) * fabs(v[j] - out), diff = fabs(x[i] - k[j]);
            mq[i] += t * diff * w * w;
            *mw += t * diff * diff * fabs(w);
        }
    }
    free(a);
}

static double *to_double(const float *a, int64_t n)
{
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

/* |lib − num| / max(max |num| over the tensor, the element's term
 * magnitude mag[i] (NULL: none), 1e-6). */
static double max_err(const float *lib, const double *num, const double *mag, int64_t n,
                      int64_t *at)
{
    double norm = 1e-6, worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        norm = fabs(num[i]) > norm ? fabs(num[i]) : norm;
    *at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)lib[i] - num[i]) / (mag && mag[i] > norm ? mag[i] : norm);
        if (!(e <= worst))
            worst = e, *at = i;
    }
    return worst;
}

/* libattn's four gradients against finite differences of the float64
 * forward at the same (float) inputs. */
static void check_problem(const char *name, int64_t nq, int64_t nk, const float *xf,
                          const float *kf, const float *vf, float wf, const float *df)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    float *dq = malloc((size_t)nq * 4 + 4), *dk = malloc((size_t)nk * 4 + 4);
    float *dv = malloc((size_t)nk * 4 + 4), dw = NAN;
    assert_true(dq && dk && dv);
    tu_fill_nan(dq, (size_t)nq), tu_fill_nan(dk, (size_t)nk), tu_fill_nan(dv, (size_t)nk);
    assert_int_equal(attn_nadaraya_watson_backward(ctx, nq, nk, xf, kf, vf, wf, df, dq, dk, dv,
                                                   &dw),
                     ATTN_OK);
    double *x = to_double(xf, nq), *k = to_double(kf, nk), *v = to_double(vf, nk);
    double *d = to_double(df, nq), w = wf;
    double *nx = malloc((size_t)nq * 8 + 8), *nkk = malloc((size_t)nk * 8 + 8);
    double *nv = malloc((size_t)nk * 8 + 8);
    assert_true(nx && nkk && nv);
    for (int64_t i = 0; i < nq; i++)
        nx[i] = numeric(nq, nk, x, k, v, &w, d, 0, i);
    for (int64_t j = 0; j < nk; j++)
        nkk[j] = numeric(nq, nk, x, k, v, &w, d, 1, j), nv[j] = numeric(nq, nk, x, k, v, &w, d, 2, j);
    double nw = numeric(nq, nk, x, k, v, &w, d, 3, 0);
    int64_t at;
    double *mq = malloc((size_t)nq * 8 + 8), mw;
    assert_non_null(mq);
    term_magnitudes(nq, nk, x, k, v, w, d, mq, &mw);
    double eq = max_err(dq, nx, mq, nq, &at), ek = max_err(dk, nkk, NULL, nk, &at);
    double ev = max_err(dv, nv, NULL, nk, &at);
    double ew = fabs((double)dw - nw) / fmax(fmax(fabs(nw), mw), 1e-6);
    free(mq);
    print_message("%-22s vs finite differences: d_queries %.2g, d_keys %.2g, d_values %.2g, "
                  "d_w %.2g (d_w %.6g)\n", name, eq, ek, ev, ew, (double)dw);
    assert_true(eq <= TOL);
    assert_true(ek <= TOL);
    assert_true(ev <= TOL);
    assert_true(ew <= TOL);

    /* Subsets: NULL outputs are not computed, the others keep their bits. */
    float *dq2 = malloc((size_t)nq * 4 + 4), dw2 = NAN;
    assert_non_null(dq2);
    assert_int_equal(attn_nadaraya_watson_backward(ctx, nq, nk, xf, kf, vf, wf, df, dq2, NULL,
                                                   NULL, &dw2),
                     ATTN_OK);
    assert_memory_equal(dq, dq2, (size_t)nq * 4);
    assert_memory_equal(&dw, &dw2, sizeof dw);
    free(dq2);
    free(x), free(k), free(v), free(d), free(nx), free(nkk), free(nv);
    free(dq), free(dk), free(dv);
    attn_context_destroy(ctx);
}

/* D2L §10.2.1: y = 2 sin x + x^0.8 + ε, ε ~ N(0, 0.5), 50 sorted inputs in
 * [0, 5); §10.2.4 trains w with each input attending to the other 49. */
static void test_d2l_leave_one_out(void **state)
{
    (void)state;
    enum { N = 50 };
    tu_rng rng;
    tu_rng_seed(&rng, 2024);
    float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)(5.0 * tu_uniform(&rng));
    for (int i = 1; i < N; i++)  /* insertion sort: D2L sorts the inputs */
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            float t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    for (int i = 0; i < N; i++)
        y[i] = (float)(2.0 * sin(x[i]) + pow(x[i], 0.8) + 0.5 * tu_normal(&rng));
    /* Query i, keys and values: the other 49 points. d_out = 2(out − y)/N
     * would need the forward; any d_out exercises the same Jacobian. */
    float keys[N - 1], values[N - 1], q[1], d[1];
    for (int i = 0; i < N; i += 7) {
        for (int j = 0, n = 0; j < N; j++)
            if (j != i)
                keys[n] = x[j], values[n] = y[j], n++;
        q[0] = x[i], d[0] = 0.3f;
        check_problem(i == 0 ? "d2l point 0, w 1" : "d2l point, w 3.7", 1, N - 1, q, keys,
                      values, i == 0 ? 1.0f : 3.7f, d);
    }
}

static void test_random(void **state)
{
    (void)state;
    const float widths[] = {0.5f, 1.0f, 4.0f, -2.5f};
    tu_rng rng;
    tu_rng_seed(&rng, 77);
    for (int c = 0; c < 4; c++) {
        enum { NQ = 23, NK = 31 };
        float x[NQ], k[NK], v[NK], d[NQ];
        tu_fill_uniform(&rng, x, NQ, 0.0f, 5.0f);
        tu_fill_uniform(&rng, k, NK, 0.0f, 5.0f);
        tu_fill_normal(&rng, v, NK, 0.0f, 2.0f);
        tu_fill_normal(&rng, d, NQ, 0.0f, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "random, w %g", (double)widths[c]);
        check_problem(name, NQ, NK, x, k, v, widths[c], d);
    }
}

static void test_edges(void **state)
{
    (void)state;
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    float x[2] = {0.5f, 1e6f}, k[3] = {0.0f, 1.0f, 2.0f}, v[3] = {1.0f, -1.0f, 3.0f};
    float d[2] = {1.0f, 1.0f}, dq[2] = {NAN, NAN}, dk[3], dv[3], dw = NAN;
    /* n_keys = 0: every gradient 0. */
    assert_int_equal(attn_nadaraya_watson_backward(ctx, 2, 0, x, NULL, NULL, 1.0f, d, dq, NULL,
                                                   NULL, &dw),
                     ATTN_OK);
    assert_true(dq[0] == 0.0f && dq[1] == 0.0f && dw == 0.0f);
    /* A query 10^6 away from every key: its weights go to the nearest key,
     * its gradients are finite. */
    assert_int_equal(attn_nadaraya_watson_backward(ctx, 2, 3, x, k, v, 1.0f, d, dq, dk, dv, &dw),
                     ATTN_OK);
    for (int i = 0; i < 3; i++)
        assert_true(isfinite(dk[i]) && isfinite(dv[i]));
    assert_true(isfinite(dq[0]) && isfinite(dq[1]) && isfinite(dw));
    assert_true(dv[2] >= 0.999f);  /* the far query's weight is all on key 2 */
    attn_context_destroy(ctx);
}

static void test_errors(void **state)
{
    (void)state;
    const char *f = "attn_nadaraya_watson_backward";
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    float x[2] = {0.5f, 1.5f}, k[3] = {0.0f, 1.0f, 2.0f}, v[3] = {1.0f, -1.0f, 3.0f};
    float d[2] = {1.0f, 1.0f};
    float outs[9], snapshot[9];
    for (int i = 0; i < 9; i++)
        outs[i] = snapshot[i] = 100.0f + (float)i;
    float *dq = outs, *dk = outs + 2, *dv = outs + 5, *dw = outs + 8;
    const struct {
        const char *name;
        attn_status st;
        attn_context *ctx;
        int64_t nq, nk;
        const float *x, *k, *v, *d;
        float w;
        float *dq, *dk, *dv, *dw;
        const char *arg;
    } cases[] = {
        {"ctx NULL", ATTN_ERR_NULL_POINTER, NULL, 2, 3, x, k, v, d, 1, dq, dk, dv, dw, "ctx"},
        {"queries NULL", ATTN_ERR_NULL_POINTER, ctx, 2, 3, NULL, k, v, d, 1, dq, dk, dv, dw,
         "queries"},
        {"keys NULL", ATTN_ERR_NULL_POINTER, ctx, 2, 3, x, NULL, v, d, 1, dq, dk, dv, dw, "keys"},
        {"values NULL", ATTN_ERR_NULL_POINTER, ctx, 2, 3, x, k, NULL, d, 1, dq, dk, dv, dw,
         "values"},
        {"d_out NULL", ATTN_ERR_NULL_POINTER, ctx, 2, 3, x, k, v, NULL, 1, dq, dk, dv, dw,
         "d_out"},
        {"n_queries -1", ATTN_ERR_INVALID_ARGUMENT, ctx, -1, 3, x, k, v, d, 1, dq, dk, dv, dw,
         "n_queries"},
        {"w NaN", ATTN_ERR_INVALID_ARGUMENT, ctx, 2, 3, x, k, v, d, NAN, dq, dk, dv, dw, "w"},
        {"w Inf", ATTN_ERR_INVALID_ARGUMENT, ctx, 2, 3, x, k, v, d, INFINITY, dq, dk, dv, dw,
         "w"},
        {"d_queries is queries", ATTN_ERR_INVALID_ARGUMENT, ctx, 2, 3, x, k, v, d, 1, x, dk, dv,
         dw, "d_queries"},
        {"d_w in d_keys", ATTN_ERR_INVALID_ARGUMENT, ctx, 2, 3, x, k, v, d, 1, dq, dk, dv,
         dk + 1, "d_w"},
        {"d_values is d_keys", ATTN_ERR_INVALID_ARGUMENT, ctx, 2, 3, x, k, v, d, 1, dq, dk, dk,
         dw, "d_values"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        attn_status st = attn_nadaraya_watson_backward(
            cases[c].ctx, cases[c].nq, cases[c].nk, cases[c].x, cases[c].k, cases[c].v,
            cases[c].w, cases[c].d, cases[c].dq, cases[c].dk, cases[c].dv, cases[c].dw);
        if (st != cases[c].st)
            fail_msg("%s: got %s, want %s", cases[c].name, attn_status_string(st),
                     attn_status_string(cases[c].st));
        const char *e = attn_last_error();
        if (strncmp(e, f, strlen(f)) != 0 || !strstr(e, cases[c].arg))
            fail_msg("%s: message \"%s\"", cases[c].name, e);
        assert_memory_equal(outs, snapshot, sizeof outs);
    }
    attn_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_d2l_leave_one_out),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
