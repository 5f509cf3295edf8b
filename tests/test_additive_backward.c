/*
 * test_additive_backward.c — training additive (Bahdanau) attention:
 * attn_additive_param_count/get/set_params, forward_train and backward,
 * against central finite differences of a float64 additive attention
 * written here from D2L §10.3.2 (score w_vᵀ tanh(W_q q + W_k k), masked
 * softmax, weighted values), with valid lengths per batch row and per
 * query and a boolean mask; D2L's own example shape (queries of size 20,
 * keys of size 2, 8 hidden units, keys and values one tensor); the shared
 * gradient buffer for keys = values; bitwise equality over 1, 2, 3
 * threads; ATTN_ERR_STATE and the other errors.
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
#include "test_util.h"

#define TOL 1e-5

typedef struct add_case {
    const char *name;
    int64_t qdim, kdim, hidden, B, Lq, Lkv, dv;
    int lengths;        /* 0 none, 1 per batch row, 2 per query */
    int keep;           /* boolean mask [B, 1, Lq, Lkv] */
    int keys_are_values;
} add_case;

typedef struct problem {
    const add_case *c;
    int64_t count, nq, nk, nv, no;
    float *params, *q, *k, *v, *d_out;
    int64_t *lengths;
    uint8_t *keep;
    attn_additive *op;
    attn_mask *mask;
} problem;

static void problem_make(problem *p, const add_case *c, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    memset(p, 0, sizeof *p);
    p->c = c;
    p->count = c->hidden * (c->qdim + c->kdim + 1);
    p->nq = c->B * c->Lq * c->qdim, p->nk = c->B * c->Lkv * c->kdim;
    p->nv = c->B * c->Lkv * c->dv, p->no = c->B * c->Lq * c->dv;
    p->params = ru_floats(p->count), p->q = ru_floats(p->nq), p->k = ru_floats(p->nk);
    p->d_out = ru_floats(p->no);
    tu_fill_normal(&rng, p->params, (size_t)p->count, 0.0f, 0.5f);
    tu_fill_normal(&rng, p->q, (size_t)p->nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->k, (size_t)p->nk, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->d_out, (size_t)p->no, 0.0f, 1.0f);
    if (c->keys_are_values) {
        p->v = p->k;
    } else {
        p->v = ru_floats(p->nv);
        tu_fill_normal(&rng, p->v, (size_t)p->nv, 0.0f, 1.0f);
    }
    assert_int_equal(attn_additive_create(&p->op, c->qdim, c->kdim, c->hidden), ATTN_OK);
    int64_t count;
    assert_int_equal(attn_additive_param_count(p->op, &count), ATTN_OK);
    assert_int_equal(count, p->count);
    assert_int_equal(attn_additive_set_params(p->op, p->params), ATTN_OK);
    assert_int_equal(attn_mask_create(&p->mask), ATTN_OK);
    int64_t nl = c->lengths == 2 ? c->B * c->Lq : c->B;
    p->lengths = malloc((size_t)nl * sizeof *p->lengths);
    assert_non_null(p->lengths);
    for (int64_t x = 0; x < nl && c->lengths; x++)  /* at least 2 keys: see test_mha_backward */
        p->lengths[x] = 2 + x % (c->Lkv - 1);
    if (c->lengths)
        assert_int_equal(attn_mask_set_kv_lengths(p->mask, p->lengths, c->B, c->Lq,
                                                  c->lengths == 2), ATTN_OK);
    if (c->keep) {
        p->keep = malloc((size_t)(c->B * c->Lq * c->Lkv));
        for (int64_t x = 0; x < c->B * c->Lq * c->Lkv; x++)
            p->keep[x] = x % c->Lkv < 2 || tu_uniform(&rng) < 0.6;
        assert_int_equal(attn_mask_set_bool(p->mask, p->keep, c->B, 1, c->Lq, c->Lkv), ATTN_OK);
    }
}

static void problem_free(problem *p)
{
    free(p->params), free(p->q), free(p->k), free(p->d_out), free(p->keep), free(p->lengths);
    if (!p->c->keys_are_values)
        free(p->v);
    attn_additive_destroy(p->op);
    attn_mask_destroy(p->mask);
}

/* Σ d_out · out in double, from the formula of attn.h. */
static double loss(const problem *p, const float *params, const float *q, const float *k,
                   const float *v)
{
    const add_case *c = p->c;
    const float *wq = params, *wk = params + c->hidden * c->qdim;
    const float *wv = wk + c->hidden * c->kdim;
    double *qh = calloc((size_t)(c->Lq * c->hidden), sizeof *qh);
    double *kh = calloc((size_t)(c->Lkv * c->hidden), sizeof *kh);
    double *s = calloc((size_t)c->Lkv, sizeof *s), l = 0.0;
    assert_true(qh && kh && s);
    for (int64_t b = 0; b < c->B; b++) {
        for (int64_t i = 0; i < c->Lq; i++)
            for (int64_t x = 0; x < c->hidden; x++) {
                double acc = 0.0;
                for (int64_t d = 0; d < c->qdim; d++)
                    acc += (double)wq[x * c->qdim + d] * q[(b * c->Lq + i) * c->qdim + d];
                qh[i * c->hidden + x] = acc;
            }
        for (int64_t j = 0; j < c->Lkv; j++)
            for (int64_t x = 0; x < c->hidden; x++) {
                double acc = 0.0;
                for (int64_t d = 0; d < c->kdim; d++)
                    acc += (double)wk[x * c->kdim + d] * k[(b * c->Lkv + j) * c->kdim + d];
                kh[j * c->hidden + x] = acc;
            }
        for (int64_t i = 0; i < c->Lq; i++) {
            int64_t len = c->lengths == 2 ? p->lengths[b * c->Lq + i]
                        : c->lengths      ? p->lengths[b] : c->Lkv;
            double m = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < c->Lkv; j++) {
                int vis = j < len && (!c->keep || p->keep[(b * c->Lq + i) * c->Lkv + j]);
                s[j] = -INFINITY;
                if (!vis)
                    continue;
                double acc = 0.0;
                for (int64_t x = 0; x < c->hidden; x++)
                    acc += (double)wv[x] * tanh(qh[i * c->hidden + x] + kh[j * c->hidden + x]);
                s[j] = acc;
                m = acc > m ? acc : m;
            }
            for (int64_t j = 0; j < c->Lkv; j++)
                sum += s[j] == -INFINITY ? 0.0 : exp(s[j] - m);
            for (int64_t d = 0; d < c->dv; d++) {
                double o = 0.0;
                for (int64_t j = 0; j < c->Lkv && sum > 0.0; j++)
                    if (s[j] != -INFINITY)
                        o += exp(s[j] - m) / sum * v[(b * c->Lkv + j) * c->dv + d];
                l += (double)p->d_out[(b * c->Lq + i) * c->dv + d] * o;
            }
        }
    }
    free(qh), free(kh), free(s);
    return l;
}

typedef struct loss_args {
    const problem *p;
    const float *params, *q, *k, *v;
} loss_args;

static double loss_of(void *arg)
{
    const loss_args *a = arg;
    return loss(a->p, a->params, a->q, a->k, a->v);
}

/* Central difference in element x, with a step of 1e-3 of its size
 * (+ 1e-4). */
static double numeric(const problem *p, float *params, float *q, float *k, float *v, float *x)
{
    loss_args a = {p, params, q, k, v};
    return tu_central_difference(x, 1e-3 * (fabs((double)*x) + 0.1), loss_of, &a);
}

static double max_err(const float *lib, const double *num, int64_t n)
{
    double norm = 1e-6, worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        norm = fabs(num[i]) > norm ? fabs(num[i]) : norm;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)lib[i] - num[i]) / norm;
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

typedef struct grads {
    float *out, *dq, *dk, *dv, *dp;
} grads;

static void grads_free(grads *g)
{
    free(g->out), free(g->dq), free(g->dk), free(g->dv), free(g->dp);
}

static grads run(const problem *p, int threads)
{
    const add_case *c = p->c;
    grads g = {ru_floats(p->no), ru_floats(p->nq), ru_floats(p->nk), ru_floats(p->nv),
               ru_floats(p->count)};
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_additive_forward_train(ctx, p->op, c->B, c->Lq, c->Lkv, c->dv, p->q,
                                                 p->k, p->v, p->mask, g.out, NULL, act),
                     ATTN_OK);
    /* keys = values: one buffer gets both gradients */
    float *dv = c->keys_are_values ? g.dk : g.dv;
    attn_status st = attn_additive_backward(ctx, p->op, act, p->d_out, g.dq, g.dk, dv, g.dp);
    if (st != ATTN_OK)
        fail_msg("backward: %s", attn_last_error());
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    return g;
}

static const add_case cases[] = {
    {"d2l_shape_keys_are_values", 20, 2, 8, 2, 1, 10, 2, 1, 0, 1},
    {"per_query_lengths_bool", 5, 4, 6, 2, 3, 5, 3, 2, 1, 0},
    {"no_mask", 3, 7, 4, 1, 4, 6, 5, 0, 0, 0},
};

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        const add_case *c = &cases[n];
        problem p;
        problem_make(&p, c, 40 + n);
        grads g = run(&p, 1);
        double *np = calloc((size_t)p.count, 8), *nq = calloc((size_t)p.nq, 8);
        double *nk = calloc((size_t)p.nk, 8), *nv = calloc((size_t)p.nv, 8);
        for (int64_t i = 0; i < p.count; i++)
            np[i] = numeric(&p, p.params, p.q, p.k, p.v, &p.params[i]);
        for (int64_t i = 0; i < p.nq; i++)
            nq[i] = numeric(&p, p.params, p.q, p.k, p.v, &p.q[i]);
        for (int64_t i = 0; i < p.nk; i++)  /* keys = values: the total derivative */
            nk[i] = numeric(&p, p.params, p.q, p.k, p.v, &p.k[i]);
        for (int64_t i = 0; i < p.nv && !c->keys_are_values; i++)
            nv[i] = numeric(&p, p.params, p.q, p.k, p.v, &p.v[i]);
        int64_t nwq = c->hidden * c->qdim, nwk = c->hidden * c->kdim;
        double e[6] = {max_err(g.dq, nq, p.nq), max_err(g.dk, nk, p.nk),
                       c->keys_are_values ? 0.0 : max_err(g.dv, nv, p.nv),
                       max_err(g.dp, np, nwq), max_err(g.dp + nwq, np + nwq, nwk),
                       max_err(g.dp + nwq + nwk, np + nwq + nwk, c->hidden)};
        print_message("%-26s vs finite differences: d_queries %.2g, d_keys %.2g, d_values "
                      "%.2g, d_W_q %.2g, d_W_k %.2g, d_w_v %.2g\n",
                      c->name, e[0], e[1], e[2], e[3], e[4], e[5]);
        for (int x = 0; x < 6; x++)
            if (!(e[x] <= TOL))
                fail_msg("%s: error %d is %.3g", c->name, x, e[x]);
        free(np), free(nq), free(nk), free(nv);
        grads_free(&g);
        problem_free(&p);
    }
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    const add_case big = {"big", 12, 10, 16, 5, 70, 300, 8, 2, 1, 0};
    problem p;
    problem_make(&p, &big, 3);
    grads one = run(&p, 1);
    for (int t = 2; t <= 3; t++) {
        grads g = run(&p, t);
        assert_memory_equal(one.out, g.out, (size_t)p.no * 4);
        assert_memory_equal(one.dq, g.dq, (size_t)p.nq * 4);
        assert_memory_equal(one.dk, g.dk, (size_t)p.nk * 4);
        assert_memory_equal(one.dv, g.dv, (size_t)p.nv * 4);
        assert_memory_equal(one.dp, g.dp, (size_t)p.count * 4);
        grads_free(&g);
    }
    grads_free(&one);
    problem_free(&p);
}

static void test_params_and_errors(void **state)
{
    (void)state;
    problem p, other;
    problem_make(&p, &cases[1], 5);
    problem_make(&other, &cases[1], 6);
    const add_case *c = p.c;
    float *back = ru_floats(p.count);
    assert_int_equal(attn_additive_get_params(p.op, back), ATTN_OK);
    assert_memory_equal(back, p.params, (size_t)p.count * 4);
    attn_additive *fresh = NULL;
    assert_int_equal(attn_additive_create(&fresh, 2, 3, 4), ATTN_OK);
    assert_int_equal(attn_additive_get_params(fresh, back), ATTN_ERR_STATE);
    attn_additive_destroy(fresh);

    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    float *out = ru_floats(p.no), *dq = ru_floats(p.nq), *dk = ru_floats(p.nk);
    float *dv = ru_floats(p.nv);
    float *dp = ru_floats(p.count);
    assert_int_equal(attn_additive_backward(ctx, p.op, act, p.d_out, dq, dk, dv, dp),
                     ATTN_ERR_STATE);
    assert_int_equal(attn_additive_forward_train(ctx, p.op, c->B, c->Lq, c->Lkv, c->dv, p.q, p.k,
                                                 p.v, p.mask, out, NULL, act), ATTN_OK);
    assert_int_equal(attn_additive_backward(ctx, other.op, act, p.d_out, dq, dk, dv, dp),
                     ATTN_ERR_STATE);
    assert_int_equal(attn_additive_backward(ctx, p.op, act, p.d_out, dq, dq, dv, dp),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "d_keys overlaps d_queries"));
    assert_int_equal(attn_additive_backward(ctx, p.op, act, p.d_out, dq, dk, dv, p.d_out),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_additive_backward(ctx, p.op, act, NULL, dq, dk, dv, dp),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(tu_count_nonfinite(dq, p.nq), p.nq);  /* nothing written */
    assert_int_equal(attn_additive_backward(ctx, p.op, act, p.d_out, dq, dk, dv, dp), ATTN_OK);
    assert_int_equal(attn_additive_set_params(p.op, p.params), ATTN_OK);
    assert_int_equal(attn_additive_backward(ctx, p.op, act, p.d_out, dq, dk, dv, dp),
                     ATTN_ERR_STATE);
    assert_non_null(strstr(attn_last_error(), "changed"));
    assert_int_equal(attn_additive_forward_train(ctx, p.op, c->B, c->Lq, c->Lkv, c->dv, p.q, p.k,
                                                 p.v, p.mask, out, NULL, NULL),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_additive_param_count(NULL, NULL), ATTN_ERR_NULL_POINTER);
    free(back), free(out), free(dq), free(dk), free(dv), free(dp);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    problem_free(&p), problem_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_params_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
