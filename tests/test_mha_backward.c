/*
 * test_mha_backward.c — training the multi-head layer: attn_mha_param_count,
 * get/set_params, set_dropout, forward_train and backward, against a
 * float64 reference written here from the formulas of attn.h:
 *
 *  1. central finite differences of the float64 forward (loss Σ d_out·out)
 *     for every element of query, key, value and of the flat parameter
 *     vector, on layers with GQA (num_kv_heads < num_heads, which PyTorch's
 *     module cannot express), kdim ≠ vdim ≠ embed_dim, with and without
 *     bias, valid lengths, a boolean mask, causal, and dropout (the keep
 *     mask taken from attn_dropout_keep_mask of an SDPA op with the same
 *     shape, p and seed, as attn.h documents);
 *  2. self-attention: one buffer passed as d_query, d_key and d_value gets
 *     their sum;
 *  3. 1, 2 and 3 threads give the same bits; forward_train's out is
 *     attn_mha_forward's (and dropout never touches the inference call);
 *  4. the flat parameters: count, order, round trip;
 *  5. ATTN_ERR_STATE for an empty act, another layer's act, or parameters
 *     and options changed after the forward; the other errors.
 * PyTorch's own numbers: tests/test_mha_backward_torch.c.
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

typedef struct layer_case {
    const char *name;
    int64_t E, H, Hkv, kdim, vdim;
    int bias;
    int64_t B, Lq, Lkv;
    attn_causal causal;
    int lengths, keep;  /* masks: valid lengths [B], boolean [1, 1, Lq, Lkv] */
    float dropout;
    int self_attention; /* query = key = value */
} layer_case;

typedef struct problem {
    const layer_case *c;
    int64_t hd, kv, count, nq, nk, nv;
    float *params, *query, *key, *value, *d_out;
    int64_t lengths[4];
    uint8_t *keep;         /* [Lq, Lkv] */
    uint8_t *drop_keep;    /* [B, H, Lq, Lkv] */
    attn_mha *mha;
    attn_mask *mask;
} problem;

/* Offsets in the flat vector: Wq, Wk, Wv, [bq, bk, bv], Wo, [bo]. */
typedef struct offsets {
    int64_t w[4], b[4];
} offsets;

static offsets offsets_of(const problem *p)
{
    const layer_case *c = p->c;
    offsets o;
    o.w[0] = 0, o.w[1] = c->E * c->E, o.w[2] = o.w[1] + p->kv * c->kdim;
    int64_t at = o.w[2] + p->kv * c->vdim;
    o.b[0] = c->bias ? at : -1, o.b[1] = c->bias ? at + c->E : -1;
    o.b[2] = c->bias ? at + c->E + p->kv : -1;
    at += c->bias ? c->E + 2 * p->kv : 0;
    o.w[3] = at, at += c->E * c->E;
    o.b[3] = c->bias ? at : -1;
    return o;
}

static void problem_make(problem *p, const layer_case *c, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    memset(p, 0, sizeof *p);
    p->c = c;
    p->hd = c->E / c->H, p->kv = c->Hkv * (c->E / c->H);
    p->count = c->E * c->E + p->kv * (c->kdim + c->vdim) + c->E * c->E +
               (c->bias ? 2 * c->E + 2 * p->kv : 0);
    p->nq = c->B * c->Lq * c->E, p->nk = c->B * c->Lkv * c->kdim, p->nv = c->B * c->Lkv * c->vdim;
    p->params = ru_floats(p->count), p->query = ru_floats(p->nq), p->d_out = ru_floats(p->nq);
    tu_fill_normal(&rng, p->params, (size_t)p->count, 0.0f, 0.4f);
    tu_fill_normal(&rng, p->query, (size_t)p->nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->d_out, (size_t)p->nq, 0.0f, 1.0f);
    if (c->self_attention) {
        p->key = p->value = p->query;
    } else {
        p->key = ru_floats(p->nk), p->value = ru_floats(p->nv);
        tu_fill_normal(&rng, p->key, (size_t)p->nk, 0.0f, 1.0f);
        tu_fill_normal(&rng, p->value, (size_t)p->nv, 0.0f, 1.0f);
    }
    assert_int_equal(attn_mha_create(&p->mha, c->E, c->H, c->Hkv, c->kdim, c->vdim, c->bias),
                     ATTN_OK);
    int64_t count;
    assert_int_equal(attn_mha_param_count(p->mha, &count), ATTN_OK);
    assert_int_equal(count, p->count);
    assert_int_equal(attn_mha_set_params(p->mha, p->params), ATTN_OK);
    assert_int_equal(attn_mha_set_causal(p->mha, c->causal), ATTN_OK);
    assert_int_equal(attn_mask_create(&p->mask), ATTN_OK);
    if (c->lengths) {
        /* Full, then one key fewer: a row with a single visible key has
         * d_query = 0 exactly, which finite differences cannot judge
         * against float rounding. */
        for (int64_t b = 0; b < c->B; b++)
            p->lengths[b] = c->Lkv - b % 2;
        assert_int_equal(attn_mask_set_kv_lengths(p->mask, p->lengths, c->B, 0, 0), ATTN_OK);
    }
    if (c->keep) {
        p->keep = malloc((size_t)(c->Lq * c->Lkv));
        for (int64_t x = 0; x < c->Lq * c->Lkv; x++)
            p->keep[x] = x % c->Lkv == 0 || tu_uniform(&rng) < 0.7;  /* key 0 always */
        assert_int_equal(attn_mask_set_bool(p->mask, p->keep, 1, 1, c->Lq, c->Lkv), ATTN_OK);
    }
    if (c->dropout > 0.0f) {
        assert_int_equal(attn_mha_set_dropout(p->mha, c->dropout, seed * 31), ATTN_OK);
        attn_sdpa *op = NULL;  /* the same mask, by attn.h's definition */
        assert_int_equal(attn_sdpa_create(&op, c->B, c->H, c->Hkv, c->Lq, c->Lkv, p->hd, p->hd),
                         ATTN_OK);
        assert_int_equal(attn_sdpa_set_dropout(op, c->dropout, seed * 31), ATTN_OK);
        p->drop_keep = malloc((size_t)(c->B * c->H * c->Lq * c->Lkv));
        assert_int_equal(attn_dropout_keep_mask(op, p->drop_keep), ATTN_OK);
        attn_sdpa_destroy(op);
    }
}

static void problem_free(problem *p)
{
    free(p->params), free(p->query), free(p->d_out), free(p->keep), free(p->drop_keep);
    if (!p->c->self_attention)
        free(p->key), free(p->value);
    attn_mha_destroy(p->mha);
    attn_mask_destroy(p->mask);
}

/* ---- the float64 reference ------------------------------------------------- */

/* y[rows, out] = x[rows, in] Wᵀ + b in double. */
static void linear(int64_t rows, int64_t in, int64_t out, const float *x, const float *w,
                   const float *b, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                acc += (double)x[r * in + i] * w[o * in + i];
            y[r * out + o] = acc;
        }
}

static void linear_d(int64_t rows, int64_t in, int64_t out, const double *x, const float *w,
                     const float *b, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                acc += x[r * in + i] * w[o * in + i];
            y[r * out + o] = acc;
        }
}

static int visible(const problem *p, int64_t b, int64_t i, int64_t j)
{
    const layer_case *c = p->c;
    if (c->causal == ATTN_CAUSAL_TOP_LEFT && j > i)
        return 0;
    if (c->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + c->Lkv - c->Lq)
        return 0;
    if (c->lengths && j >= p->lengths[b])
        return 0;
    return !c->keep || p->keep[i * c->Lkv + j];
}

/* Σ d_out · out of the layer with parameters params, in double. */
static double loss(const problem *p, const float *params, const float *query, const float *key,
                   const float *value)
{
    const layer_case *c = p->c;
    offsets o = offsets_of(p);
    int64_t nq = c->B * c->Lq, nkv = c->B * c->Lkv, group = c->H / c->Hkv;
    double *qp = ru_doubles(nq * c->E), *kp = ru_doubles(nkv * p->kv);
    double *vp = ru_doubles(nkv * p->kv);
    double *a = ru_doubles(nq * c->E), *out = ru_doubles(nq * c->E), *s = ru_doubles(c->Lkv);
    const float *bias[4];
    for (int x = 0; x < 4; x++)
        bias[x] = c->bias ? params + o.b[x] : NULL;
    linear(nq, c->E, c->E, query, params + o.w[0], bias[0], qp);
    linear(nkv, c->kdim, p->kv, key, params + o.w[1], bias[1], kp);
    linear(nkv, c->vdim, p->kv, value, params + o.w[2], bias[2], vp);
    double scale = (float)(1.0 / sqrt((double)p->hd));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->Lq; i++) {
                int64_t g = h / group;
                double m = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < c->Lkv; j++) {
                    s[j] = -INFINITY;
                    if (!visible(p, b, i, j))
                        continue;
                    double dot = 0.0;
                    for (int64_t d = 0; d < p->hd; d++)
                        dot += qp[(b * c->Lq + i) * c->E + h * p->hd + d] *
                               kp[(b * c->Lkv + j) * p->kv + g * p->hd + d];
                    s[j] = scale * dot;
                    m = s[j] > m ? s[j] : m;
                }
                for (int64_t j = 0; j < c->Lkv; j++)
                    sum += s[j] == -INFINITY ? 0.0 : exp(s[j] - m);
                for (int64_t d = 0; d < p->hd; d++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < c->Lkv && sum > 0.0; j++) {
                        if (s[j] == -INFINITY)
                            continue;
                        double w = exp(s[j] - m) / sum;
                        if (p->drop_keep)
                            w = p->drop_keep[((b * c->H + h) * c->Lq + i) * c->Lkv + j]
                                    ? w / (1.0 - (double)c->dropout) : 0.0;
                        acc += w * vp[(b * c->Lkv + j) * p->kv + g * p->hd + d];
                    }
                    a[(b * c->Lq + i) * c->E + h * p->hd + d] = acc;
                }
            }
    linear_d(nq, c->E, c->E, a, params + o.w[3], bias[3], out);
    double l = 0.0;
    for (int64_t x = 0; x < nq * c->E; x++)
        l += (double)p->d_out[x] * out[x];
    free(qp), free(kp), free(vp), free(a), free(out), free(s);
    return l;
}

typedef struct loss_args {
    const problem *p;
    const float *params, *query, *key, *value;
} loss_args;

static double loss_of(void *arg)
{
    const loss_args *a = arg;
    return loss(a->p, a->params, a->query, a->key, a->value);
}

/* Central difference in element x of a float array the loss reads, with a
 * step of 1e-3 of its size (+ 1e-4). */
static double numeric(const problem *p, float *params, float *query, float *key, float *value,
                      float *x)
{
    loss_args a = {p, params, query, key, value};
    return tu_central_difference(x, 1e-3 * (fabs((double)*x) + 0.1), loss_of, &a);
}

/* |lib − num| / max(max |num| over [from, to), floor). */
static double block_err(const float *lib, const double *num, int64_t from, int64_t to,
                        double floor, int64_t *at)
{
    double norm = floor > 1e-6 ? floor : 1e-6, worst = 0.0;
    for (int64_t i = from; i < to; i++)
        norm = fabs(num[i]) > norm ? fabs(num[i]) : norm;
    for (int64_t i = from; i < to; i++) {
        double e = fabs((double)lib[i] - num[i]) / norm;
        if (!(e <= worst))
            worst = e, *at = i;
    }
    return worst;
}

/* ---- runs ----------------------------------------------------------------- */

typedef struct grads {
    float *out, *dq, *dk, *dv, *dp;
} grads;

static void grads_free(grads *g)
{
    free(g->out), free(g->dq), free(g->dk), free(g->dv), free(g->dp);
}

/* forward_train + backward on a fresh context of `threads`; self-attention
 * cases pass one buffer for the three input gradients when shared. */
static grads run(const problem *p, int threads, int shared)
{
    grads g = {ru_floats(p->nq), ru_floats(p->nq), ru_floats(p->nk), ru_floats(p->nv),
               ru_floats(p->count)};
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    const layer_case *c = p->c;
    attn_status st = attn_mha_forward_train(ctx, p->mha, c->B, c->Lq, c->Lkv, p->query, p->key,
                                            p->value, p->mask, g.out, NULL, act);
    if (st != ATTN_OK)
        fail_msg("forward_train: %s", attn_last_error());
    st = attn_mha_backward(ctx, p->mha, act, p->d_out, g.dq, shared ? g.dq : g.dk,
                           shared ? g.dq : g.dv, g.dp);
    if (st != ATTN_OK)
        fail_msg("backward: %s", attn_last_error());
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    return g;
}

static const layer_case fd_cases[] = {
    {"gqa_bias_masks", 8, 4, 2, 6, 5, 1, 2, 3, 4, ATTN_CAUSAL_NONE, 1, 1, 0.0f, 0},
    {"mha_nobias_causal", 6, 2, 2, 6, 6, 0, 2, 4, 4, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0.0f, 0},
    {"mqa_bias_bottom_right", 8, 4, 1, 3, 7, 1, 1, 3, 5, ATTN_CAUSAL_BOTTOM_RIGHT, 0, 1, 0.0f,
     0},
    {"dropout_gqa", 8, 4, 2, 8, 8, 1, 2, 4, 3, ATTN_CAUSAL_NONE, 1, 0, 0.35f, 0},
    {"self_attention", 6, 3, 3, 6, 6, 1, 2, 4, 4, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0.0f, 1},
};

static void check_against_numeric(const problem *p, const grads *g)
{
    const layer_case *c = p->c;
    float *params = malloc((size_t)p->count * 4), *q = malloc((size_t)p->nq * 4);
    float *k = c->self_attention ? q : malloc((size_t)p->nk * 4);
    float *v = c->self_attention ? q : malloc((size_t)p->nv * 4);
    memcpy(params, p->params, (size_t)p->count * 4);
    memcpy(q, p->query, (size_t)p->nq * 4);
    if (!c->self_attention)
        memcpy(k, p->key, (size_t)p->nk * 4), memcpy(v, p->value, (size_t)p->nv * 4);
    double *np = ru_doubles(p->count), *nq = ru_doubles(p->nq), *nk = ru_doubles(p->nk);
    double *nv = ru_doubles(p->nv);
    for (int64_t i = 0; i < p->count; i++)
        np[i] = numeric(p, params, q, k, v, &params[i]);
    for (int64_t i = 0; i < p->nq; i++)
        nq[i] = numeric(p, params, q, k, v, &q[i]);
    for (int64_t i = 0; i < p->nk && !c->self_attention; i++)
        nk[i] = numeric(p, params, q, k, v, &k[i]);
    for (int64_t i = 0; i < p->nv && !c->self_attention; i++)
        nv[i] = numeric(p, params, q, k, v, &v[i]);
    int64_t at = 0;
    double worst = 0.0;
    const char *where = "";
    /* self-attention: nq is already the derivative with respect to the one
     * input, which the shared buffer g->dq must hold */
    double e = block_err(g->dq, nq, 0, p->nq, 0.0, &at);
    if (e > worst) worst = e, where = "d_query";
    if (!c->self_attention) {
        if ((e = block_err(g->dk, nk, 0, p->nk, 0.0, &at)) > worst) worst = e, where = "d_key";
        if ((e = block_err(g->dv, nv, 0, p->nv, 0.0, &at)) > worst) worst = e, where = "d_value";
    }
    offsets o = offsets_of(p);
    static const char *wn[4] = {"d_Wq", "d_Wk", "d_Wv", "d_Wo"}, *bn[4] = {"d_bq", "d_bk",
                                                                          "d_bv", "d_bo"};
    int64_t wlen[4] = {c->E * c->E, p->kv * c->kdim, p->kv * c->vdim, c->E * c->E};
    int64_t blen[4] = {c->E, p->kv, p->kv, c->E};
    /* A weight block is judged against its own size; a bias block against
     * its own or its weight block's, whichever is larger: d_bk is 0 in
     * exact arithmetic (adding q·bk to every logit of a row leaves the
     * softmax unchanged), a sum of terms the size of d_Wk's that cancel,
     * and float leaves their rounding there. */
    for (int x = 0; x < 4; x++) {
        double wmax = 0.0;
        for (int64_t i = o.w[x]; i < o.w[x] + wlen[x]; i++)
            wmax = fabs(np[i]) > wmax ? fabs(np[i]) : wmax;
        if ((e = block_err(g->dp, np, o.w[x], o.w[x] + wlen[x], 0.0, &at)) > worst)
            worst = e, where = wn[x];
        if (c->bias && (e = block_err(g->dp, np, o.b[x], o.b[x] + blen[x], wmax, &at)) > worst)
            worst = e, where = bn[x];
    }
    print_message("%-22s libattn vs finite differences of the float64 layer: worst %.2g (%s)\n",
                  c->name, worst, where);
    if (!(worst <= TOL))
        fail_msg("%s: %s error %.3g", c->name, where, worst);
    free(np), free(nq), free(nk), free(nv), free(params), free(q);
    if (!c->self_attention)
        free(k), free(v);
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof fd_cases / sizeof fd_cases[0]; i++) {
        problem p;
        problem_make(&p, &fd_cases[i], 100 + i);
        grads g = run(&p, 1, fd_cases[i].self_attention);
        check_against_numeric(&p, &g);
        grads_free(&g);
        problem_free(&p);
    }
}

/* One buffer for the three input gradients holds their sum. */
static void test_shared_gradient_is_the_sum(void **state)
{
    (void)state;
    problem p;
    problem_make(&p, &fd_cases[4], 7);
    grads shared = run(&p, 1, 1), apart = run(&p, 1, 0);
    for (int64_t i = 0; i < p.nq; i++) {
        double sum = (double)apart.dq[i] + apart.dk[i] + apart.dv[i];
        if (fabs(shared.dq[i] - sum) > 1e-6 * (fabs(sum) + 1.0))
            fail_msg("element %lld: shared %.9g, sum of the three %.9g", (long long)i,
                     (double)shared.dq[i], sum);
    }
    grads_free(&shared), grads_free(&apart);
    problem_free(&p);
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    const layer_case big = {"big", 32, 4, 2, 24, 16, 1, 3, 150, 130, ATTN_CAUSAL_NONE, 1, 0,
                            0.2f, 0};
    problem p;
    problem_make(&p, &big, 9);
    grads one = run(&p, 1, 0);
    for (int t = 2; t <= 3; t++) {
        grads g = run(&p, t, 0);
        assert_memory_equal(one.out, g.out, (size_t)p.nq * 4);
        assert_memory_equal(one.dq, g.dq, (size_t)p.nq * 4);
        assert_memory_equal(one.dk, g.dk, (size_t)p.nk * 4);
        assert_memory_equal(one.dv, g.dv, (size_t)p.nv * 4);
        assert_memory_equal(one.dp, g.dp, (size_t)p.count * 4);
        grads_free(&g);
    }
    grads_free(&one);
    problem_free(&p);
}

/* forward_train's out is attn_mha_forward's when no dropout is set; with
 * dropout, attn_mha_forward (inference) is unchanged. */
static void test_train_and_inference_forwards(void **state)
{
    (void)state;
    problem p;
    problem_make(&p, &fd_cases[0], 11);
    const layer_case *c = p.c;
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    float *a = ru_floats(p.nq), *b = ru_floats(p.nq), *d = ru_floats(p.nq);
    assert_int_equal(attn_mha_forward(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key, p.value,
                                      p.mask, a, NULL), ATTN_OK);
    assert_int_equal(attn_mha_forward_train(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key,
                                            p.value, p.mask, b, NULL, act), ATTN_OK);
    assert_memory_equal(a, b, (size_t)p.nq * 4);
    assert_int_equal(attn_mha_set_dropout(p.mha, 0.5f, 3), ATTN_OK);
    assert_int_equal(attn_mha_forward(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key, p.value,
                                      p.mask, d, NULL), ATTN_OK);
    assert_memory_equal(a, d, (size_t)p.nq * 4);
    free(a), free(b), free(d);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    problem_free(&p);
}

static void test_params(void **state)
{
    (void)state;
    attn_mha *m = NULL;
    /* Count: E=8, kv = 2·2 = 4, kdim 6, vdim 5, bias. */
    assert_int_equal(attn_mha_create(&m, 8, 4, 2, 6, 5, 1), ATTN_OK);
    int64_t count = -1;
    assert_int_equal(attn_mha_param_count(m, &count), ATTN_OK);
    assert_int_equal(count, 64 + 24 + 20 + 8 + 4 + 4 + 64 + 8);
    float *params = ru_floats(count), *back = ru_floats(count);
    assert_int_equal(attn_mha_get_params(m, back), ATTN_ERR_STATE);  /* nothing set yet */
    for (int64_t i = 0; i < count; i++)
        params[i] = (float)i;
    assert_int_equal(attn_mha_set_params(m, params), ATTN_OK);
    assert_int_equal(attn_mha_get_params(m, back), ATTN_OK);
    assert_memory_equal(params, back, (size_t)count * 4);
    /* The order is Wq, Wk, Wv, bq, bk, bv, Wo, bo: set_weights(V) moves
     * elements 88 .. 107 (Wv) and 120 .. 123 (bv) only. */
    float wv[20], bv[4];
    for (int i = 0; i < 20; i++)
        wv[i] = -1.0f - (float)i;
    for (int i = 0; i < 4; i++)
        bv[i] = -100.0f - (float)i;
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_V, wv, bv), ATTN_OK);
    assert_int_equal(attn_mha_get_params(m, back), ATTN_OK);
    for (int64_t i = 0; i < count; i++) {
        float want = i >= 88 && i < 108 ? wv[i - 88] : i >= 120 && i < 124 ? bv[i - 120]
                                                                            : params[i];
        if (back[i] != want)
            fail_msg("params[%lld] = %g, want %g", (long long)i, (double)back[i], (double)want);
    }
    assert_int_equal(attn_mha_param_count(NULL, &count), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_param_count(m, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_set_params(m, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mha_get_params(m, NULL), ATTN_ERR_NULL_POINTER);
    free(params), free(back);
    attn_mha_destroy(m);
    /* Without bias: no bias blocks. */
    assert_int_equal(attn_mha_create(&m, 8, 2, 2, 8, 8, 0), ATTN_OK);
    assert_int_equal(attn_mha_param_count(m, &count), ATTN_OK);
    assert_int_equal(count, 4 * 64);
    attn_mha_destroy(m);
}

static void expect(attn_status got, attn_status want, const char *arg)
{
    if (got != want)
        fail_msg("got %s, want %s (%s)", attn_status_string(got), attn_status_string(want),
                 attn_last_error());
    if (!strstr(attn_last_error(), arg))
        fail_msg("message \"%s\" does not mention %s", attn_last_error(), arg);
}

static void test_state_and_errors(void **state)
{
    (void)state;
    problem p, other;
    problem_make(&p, &fd_cases[0], 21);
    problem_make(&other, &fd_cases[0], 22);
    const layer_case *c = p.c;
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    float *out = ru_floats(p.nq), *dq = ru_floats(p.nq), *dk = ru_floats(p.nk);
    float *dv = ru_floats(p.nv);
    float *dp = ru_floats(p.count);
    const char *f = "attn_mha_backward";

    expect(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_STATE, f);
    assert_int_equal(attn_mha_forward_train(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key,
                                            p.value, p.mask, out, NULL, act), ATTN_OK);
    expect(attn_mha_backward(ctx, other.mha, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_STATE,
           "another layer");
    expect(attn_mha_backward(NULL, p.mha, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_NULL_POINTER,
           "ctx");
    expect(attn_mha_backward(ctx, NULL, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_NULL_POINTER,
           "mha");
    expect(attn_mha_backward(ctx, p.mha, NULL, p.d_out, dq, dk, dv, dp), ATTN_ERR_NULL_POINTER,
           "act");
    expect(attn_mha_backward(ctx, p.mha, act, NULL, dq, dk, dv, dp), ATTN_ERR_NULL_POINTER,
           "d_out");
    expect(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dq, dv, dp),
           ATTN_ERR_INVALID_ARGUMENT, "d_key overlaps d_query");  /* shapes differ */
    expect(attn_mha_backward(ctx, p.mha, act, p.d_out, p.d_out, dk, dv, dp),
           ATTN_ERR_INVALID_ARGUMENT, "d_query overlaps d_out");
    expect(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dk, dv, dq),
           ATTN_ERR_INVALID_ARGUMENT, "d_params overlaps d_query");
    /* The failed calls wrote nothing. */
    assert_int_equal(tu_count_nonfinite(dq, p.nq), p.nq);
    assert_int_equal(tu_count_nonfinite(dp, p.count), p.count);
    assert_int_equal(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dk, dv, dp), ATTN_OK);
    assert_int_equal(attn_mha_backward(ctx, p.mha, act, p.d_out, NULL, NULL, NULL, NULL),
                     ATTN_OK);

    /* Parameters or options changed after the forward: refused. */
    assert_int_equal(attn_mha_set_params(p.mha, p.params), ATTN_OK);
    expect(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_STATE,
           "changed");
    for (int which = 0; which < 3; which++) {
        assert_int_equal(attn_mha_forward_train(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key,
                                                p.value, p.mask, out, NULL, act), ATTN_OK);
        if (which == 0)
            assert_int_equal(attn_mha_set_causal(p.mha, ATTN_CAUSAL_NONE), ATTN_OK);
        else if (which == 1)
            assert_int_equal(attn_mha_set_dropout(p.mha, 0.1f, 5), ATTN_OK);
        else
            assert_int_equal(attn_mha_set_weights(p.mha, ATTN_PROJ_O, p.params, p.params),
                             ATTN_OK);
        expect(attn_mha_backward(ctx, p.mha, act, p.d_out, dq, dk, dv, dp), ATTN_ERR_STATE,
               "changed");
    }
    expect(attn_mha_forward_train(ctx, p.mha, c->B, c->Lq, c->Lkv, p.query, p.key, p.value,
                                  p.mask, out, NULL, NULL), ATTN_ERR_NULL_POINTER, "act");
    expect(attn_mha_set_dropout(p.mha, 1.0f, 1), ATTN_ERR_INVALID_ARGUMENT, "p");
    expect(attn_mha_set_dropout(NULL, 0.1f, 1), ATTN_ERR_NULL_POINTER, "mha");
    expect(attn_activations_create(NULL), ATTN_ERR_NULL_POINTER, "act");
    attn_activations_destroy(NULL);
    free(out), free(dq), free(dk), free(dv), free(dp);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    problem_free(&p), problem_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_shared_gradient_is_the_sum),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_train_and_inference_forwards),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_state_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
