/*
 * test_layers.c — the layers built on attention agree with independent
 * float64 references written plainly in this file (never libattn's own
 * output), to tu_max_err ≤ 1e-5 (test_util.h) unless stated:
 *
 *  - additive (Bahdanau) attention: D2L §10.3.2's example (keys all ones, so
 *    for any weights the output is the mean of the valid value rows:
 *    [2, 3, 4, 5] and [10, 11, 12, 13], weights uniform over the valid keys);
 *    random shapes against score = w_vᵀ tanh(W_q q + W_k k) with
 *    query_dim ≠ key_dim, several hidden sizes, > 64 query rows, every mask
 *    kind with broadcasting, NaN in padding keys, weights requested or NULL;
 *  - Nadaraya–Watson regression on D2L §10.2's data, w = 1, 3 and 0.5;
 *    queries so far away that every exp underflows without the max
 *    subtraction; n_keys = 0 (zeros) and n_queries = 0;
 *  - the sinusoidal positional encoding for positions up to 10^4 (absolute
 *    AND relative error ≤ 1e-5), and D2L's P[pos, 0] = sin(pos);
 *  - multi-head attention: self (one pointer thrice) and cross attention,
 *    kdim/vdim ≠ embed_dim, bias on/off, GQA (6 heads, 2 and 3 kv heads),
 *    MQA, every mask kind with heads dim num_heads or 1, both causal
 *    alignments (including rows that see nothing), weights per head or NULL,
 *    batch 0, len_q 0, len_kv 0 (out = b_o), 150-long sequences.
 *
 * Outputs are pre-filled with NaN (an element a call forgets fails); every
 * random case runs on 1 and 2 threads, which must agree bitwise. The largest
 * error seen per layer is printed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <attn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define TOL 1e-5

/* ---- small helpers ---------------------------------------------------- */

enum { L_ADD, L_NW, L_PE, L_MHA, L_COUNT };
static const char *const layer_name[L_COUNT] = {"additive", "nadaraya-watson",
                                                "positional (relative)", "mha"};
static double max_err_seen[L_COUNT];
static double pe_abs_err_seen;

static uint64_t seed_of(const char *name) /* FNV-1a: each case its own seed */
{
    uint64_t h = 1469598103934665603u;
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 1099511628211u;
    return h;
}

static float *fnan(int64_t n) /* NaN-filled output buffer, never NULL */
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    assert_non_null(p);
    tu_fill_nan(p, (size_t)(n > 0 ? n : 1));
    return p;
}

/* Random buffer: U[-a, a) for a > 0, N(0, 1) for a = 0. */
static float *frand(tu_rng *rng, int64_t n, float a)
{
    float *p = fnan(n);
    if (a > 0.0f)
        tu_fill_uniform(rng, p, (size_t)n, -a, a);
    else
        tu_fill_normal(rng, p, (size_t)n, 0.0f, 1.0f);
    return p;
}

static double *dzero(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

/* The pointer, or NULL for an empty tensor (which the API allows). */
static const float *nz(const float *p, int64_t n) { return n > 0 ? p : NULL; }

static void expect_close(int layer, const char *name, const char *what, const float *got,
                         const double *want, int64_t n, int64_t row_len)
{
    int64_t at;
    double e = tu_max_err(got, want, n, row_len, &at);
    if (e > max_err_seen[layer])
        max_err_seen[layer] = e;
    if (!(e <= TOL))
        fail_msg("%s: %s: error %.3g > %g at element %lld: got %.9g, want %.9g", name, what, e,
                 TOL, (long long)at, (double)got[at], want[at]);
}

/* ctx[0] runs forward calls on 1 thread, ctx[1] on 2. */
static void contexts_1_and_2_threads(attn_context *ctx[2])
{
    for (int x = 0; x < 2; x++) {
        ctx[x] = NULL;
        assert_int_equal(attn_context_create(&ctx[x]), ATTN_OK);
        assert_int_equal(attn_context_set_num_threads(ctx[x], x + 1), ATTN_OK);
    }
}

/* The two contexts' outputs a[0], a[1] are bitwise identical; then frees them. */
static void expect_same_bits_and_free(const char *name, const char *what, float *a[2], int64_t n)
{
    if (n > 0 && memcmp(a[0], a[1], (size_t)n * sizeof *a[0]) != 0)
        fail_msg("%s: %s differ between 1 and 2 threads", name, what);
    free(a[0]), free(a[1]);
}

/* Softmax of one row of logits in place; -INFINITY = masked (weight 0).
 * A row with no visible key becomes zeros. */
static void ref_softmax(double *l, int64_t n)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < n; j++)
        if (l[j] > m)
            m = l[j];
    for (int64_t j = 0; j < n; j++) {
        l[j] = (m == -INFINITY || l[j] == -INFINITY) ? 0.0 : exp(l[j] - m);
        s += l[j];
    }
    for (int64_t j = 0; j < n && s > 0.0; j++)
        l[j] /= s;
}

/* y[r, o] = Σ_i x[r, i] W[o, i] + b[o] with W [out_f, in_f] (nn.Linear), in
 * double; x is the float xf or, if xf is NULL, the double xd. b may be NULL. */
static void ref_linear(const float *xf, const double *xd, int64_t rows, int64_t in_f,
                       const float *W, const float *b, int64_t out_f, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out_f; o++) {
            double s = b ? (double)b[o] : 0.0;
            for (int64_t i = 0; i < in_f; i++)
                s += (xf ? (double)xf[r * in_f + i] : xd[r * in_f + i]) * W[o * in_f + i];
            y[r * out_f + o] = s;
        }
}

/* ---- masks: the test's own arrays, read by the references directly ----- */

enum { MK_NONE, MK_LEN_BATCH, MK_LEN_QUERY, MK_BOOL, MK_BIAS };
enum { BC_B = 1, BC_H = 2, BC_Q = 4 }; /* mask dims broadcast (size 1) */

typedef struct tmask {
    int kind;
    int64_t len_q, len_kv, mb, mh, mq;
    int64_t *lengths;
    uint8_t *keep;
    float *bias;
    attn_mask *mask; /* libattn's view of the same arrays; NULL for MK_NONE */
} tmask;

static void tmask_make(tmask *t, tu_rng *rng, int kind, int bc, int64_t batch, int64_t heads,
                       int64_t len_q, int64_t len_kv)
{
    memset(t, 0, sizeof *t);
    t->kind = kind, t->len_q = len_q, t->len_kv = len_kv;
    t->mb = (bc & BC_B) ? 1 : batch, t->mh = (bc & BC_H) ? 1 : heads;
    t->mq = (bc & BC_Q) ? 1 : len_q;
    if (kind == MK_NONE)
        return;
    assert_int_equal(attn_mask_create(&t->mask), ATTN_OK);
    if (kind == MK_LEN_BATCH || kind == MK_LEN_QUERY) {
        int per_query = kind == MK_LEN_QUERY;
        int64_t n = per_query ? batch * len_q : batch;
        t->lengths = malloc((size_t)n * sizeof *t->lengths);
        assert_non_null(t->lengths);
        for (int64_t x = 0; x < n; x++) /* the first row sees no key at all */
            t->lengths[x] = x == 0 ? 0 : tu_randint(rng, 0, len_kv);
        assert_int_equal(attn_mask_set_kv_lengths(t->mask, t->lengths, batch, len_q, per_query),
                         ATTN_OK);
        return;
    }
    int64_t n = t->mb * t->mh * t->mq * len_kv;
    t->keep = malloc((size_t)n + 1); /* keep 70 % of the keys; bias -inf on 20 % */
    t->bias = fnan(n);
    assert_non_null(t->keep);
    for (int64_t x = 0; x < n; x++) {
        t->keep[x] = tu_uniform(rng) < 0.7;
        t->bias[x] = tu_uniform(rng) < 0.2 ? -INFINITY : (float)tu_normal(rng);
    }
    assert_int_equal(kind == MK_BOOL
                         ? attn_mask_set_bool(t->mask, t->keep, t->mb, t->mh, t->mq, len_kv)
                         : attn_mask_set_bias(t->mask, t->bias, t->mb, t->mh, t->mq, len_kv),
                     ATTN_OK);
}

/* What the mask adds to logit (b, h, i, j): 0, a bias, or -INFINITY. */
static double tmask_add(const tmask *t, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (t->kind == MK_LEN_BATCH)
        return j < t->lengths[b] ? 0.0 : -INFINITY;
    if (t->kind == MK_LEN_QUERY)
        return j < t->lengths[b * t->len_q + i] ? 0.0 : -INFINITY;
    if (t->kind == MK_NONE)
        return 0.0;
    int64_t x = (((t->mb == 1 ? 0 : b) * t->mh + (t->mh == 1 ? 0 : h)) * t->mq +
                 (t->mq == 1 ? 0 : i)) * t->len_kv + j;
    return t->kind == MK_BOOL ? (t->keep[x] ? 0.0 : -INFINITY) : (double)t->bias[x];
}

static void tmask_free(tmask *t)
{
    attn_mask_destroy(t->mask);
    free(t->lengths), free(t->keep), free(t->bias);
}

/* Per-batch lengths: fill padding key and value rows with NaN (never read). */
static void nan_padding(const tmask *t, int64_t batch, float *key, int64_t kdim, float *value,
                        int64_t vdim)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t j = t->lengths[b]; j < t->len_kv; j++) {
            tu_fill_nan(key + (b * t->len_kv + j) * kdim, (size_t)kdim);
            tu_fill_nan(value + (b * t->len_kv + j) * vdim, (size_t)vdim);
        }
}

/* ---- additive attention ------------------------------------------------ */

typedef struct add_case {
    const char *name;
    int64_t batch, len_q, len_kv, qdim, kdim, hidden, dim_v;
    int mask, bc, weights, nan_pad;
} add_case;

/* score(q, k) = w_vᵀ tanh(W_q q + W_k k), masked softmax, · V; in double. */
static void ref_additive(const add_case *c, const float *wq, const float *wk, const float *wv,
                         const float *q, const float *k, const float *v, const tmask *t,
                         double *out, double *wts)
{
    int64_t H = c->hidden, Lq = c->len_q, Lk = c->len_kv, Dv = c->dim_v;
    double *pq = dzero(Lq * H), *pk = dzero(Lk * H), *row = dzero(Lk);
    for (int64_t b = 0; b < c->batch; b++) {
        ref_linear(q + b * Lq * c->qdim, NULL, Lq, c->qdim, wq, NULL, H, pq); /* W_q q */
        ref_linear(k + b * Lk * c->kdim, NULL, Lk, c->kdim, wk, NULL, H, pk); /* W_k k */
        for (int64_t i = 0; i < Lq; i++) {
            for (int64_t j = 0; j < Lk; j++) {
                double add = tmask_add(t, b, 0, i, j), s = 0.0;
                for (int64_t h = 0; h < H && add != -INFINITY; h++)
                    s += (double)wv[h] * tanh(pq[i * H + h] + pk[j * H + h]);
                row[j] = add == -INFINITY ? -INFINITY : s + add;
            }
            ref_softmax(row, Lk);
            for (int64_t e = 0; e < Dv; e++) {
                double s = 0.0;
                for (int64_t j = 0; j < Lk; j++)
                    if (row[j] != 0.0)
                        s += row[j] * v[(b * Lk + j) * Dv + e];
                out[(b * Lq + i) * Dv + e] = s;
            }
            if (wts)
                memcpy(wts + (b * Lq + i) * Lk, row, (size_t)Lk * sizeof *row);
        }
    }
    free(pq);
    free(pk);
    free(row);
}

static add_case add_cases[] = {
    /* name, batch, len_q, len_kv, qdim, kdim, hidden, dim_v, mask, bc, weights, nan_pad */
    {"additive_random_no_mask_hidden_8", 3, 5, 7, 6, 4, 8, 3, MK_NONE, 0, 1, 0},
    {"additive_random_hidden_1", 2, 9, 6, 3, 5, 1, 2, MK_NONE, 0, 1, 0},
    {"additive_hidden_64_query_dim_gt_key_dim", 2, 20, 13, 24, 5, 64, 6, MK_NONE, 0, 1, 0},
    {"additive_100_queries_two_blocks_hidden_16", 2, 100, 33, 5, 9, 16, 4, MK_NONE, 0, 1, 0},
    {"additive_lengths_per_batch_70_queries", 3, 70, 12, 7, 3, 8, 5, MK_LEN_BATCH, 0, 1, 0},
    {"additive_nan_padding_never_read", 3, 10, 12, 4, 3, 8, 5, MK_LEN_BATCH, 0, 1, 1},
    {"additive_lengths_per_query_100_queries", 2, 100, 15, 4, 6, 12, 3, MK_LEN_QUERY, 0, 1, 0},
    {"additive_bool_mask_full_shape_80_queries", 2, 80, 11, 5, 7, 10, 4, MK_BOOL, 0, 1, 0},
    {"additive_bool_mask_broadcast_batch", 3, 9, 8, 5, 2, 6, 3, MK_BOOL, BC_B, 1, 0},
    {"additive_bool_mask_broadcast_query", 2, 66, 10, 3, 8, 4, 2, MK_BOOL, BC_Q, 1, 0},
    {"additive_bias_mask_neg_inf_90_queries", 2, 90, 14, 6, 4, 20, 5, MK_BIAS, 0, 1, 0},
    {"additive_bias_mask_broadcast_b_and_q", 3, 7, 9, 4, 4, 8, 3, MK_BIAS, BC_B | BC_Q, 1, 0},
    {"additive_weights_null_lengths_per_query", 2, 100, 15, 4, 6, 32, 3, MK_LEN_QUERY, 0, 0, 0},
    {"additive_weights_null_bias_mask", 2, 70, 9, 3, 3, 5, 2, MK_BIAS, 0, 0, 0},
    {"additive_150_queries_bool_bcast_batch", 2, 150, 40, 6, 5, 16, 4, MK_BOOL, BC_B, 1, 0},
    {"additive_len_kv_0_out_zeros", 2, 5, 0, 3, 4, 8, 3, MK_NONE, 0, 1, 0},
    {"additive_batch_0", 0, 5, 4, 3, 4, 8, 3, MK_NONE, 0, 1, 0},
    {"additive_len_q_0", 2, 0, 4, 3, 4, 8, 3, MK_NONE, 0, 1, 0},
};

/* Every case runs on 1 and on 2 threads: bitwise identical, and equal to the
 * reference. */
static void run_additive_case(void **state)
{
    const add_case *c = *state;
    int64_t nq = c->batch * c->len_q, nk = c->batch * c->len_kv;
    int64_t no = nq * c->dim_v, nw = nq * c->len_kv;
    tu_rng rng;
    tmask t;
    attn_additive *op = NULL;
    attn_context *ctx[2];
    tu_rng_seed(&rng, seed_of(c->name));
    float *wq = frand(&rng, c->hidden * c->qdim, 0.5f), *wv = frand(&rng, c->hidden, 0.5f);
    float *wk = frand(&rng, c->hidden * c->kdim, 0.5f), *q = frand(&rng, nq * c->qdim, 0.0f);
    float *k = frand(&rng, nk * c->kdim, 0.0f), *v = frand(&rng, nk * c->dim_v, 0.0f);
    float *out[2] = {fnan(no), fnan(no)}, *w[2] = {fnan(nw), fnan(nw)};
    double *rout = dzero(no), *rw = dzero(nw);
    tmask_make(&t, &rng, c->mask, c->bc, c->batch, 1, c->len_q, c->len_kv);
    if (c->nan_pad)
        nan_padding(&t, c->batch, k, c->kdim, v, c->dim_v);
    assert_int_equal(attn_additive_create(&op, c->qdim, c->kdim, c->hidden), ATTN_OK);
    assert_int_equal(attn_additive_set_weights(op, wq, wk, wv), ATTN_OK);
    contexts_1_and_2_threads(ctx);
    for (int x = 0; x < 2; x++)
        assert_int_equal(attn_additive_forward(ctx[x], op, c->batch, c->len_q, c->len_kv, c->dim_v,
                                               nz(q, nq * c->qdim), nz(k, nk * c->kdim),
                                               nz(v, nk * c->dim_v), t.mask,
                                               no ? out[x] : NULL, c->weights ? w[x] : NULL),
                         ATTN_OK);
    ref_additive(c, wq, wk, wv, q, k, v, &t, rout, rw);
    expect_close(L_ADD, c->name, "out", out[0], rout, no, c->dim_v);
    if (c->weights)
        expect_close(L_ADD, c->name, "weights", w[0], rw, nw, c->len_kv);
    expect_same_bits_and_free(c->name, "out", out, no);
    expect_same_bits_and_free(c->name, "weights", w, nw);
    attn_context_destroy(ctx[0]), attn_context_destroy(ctx[1]);
    attn_additive_destroy(op);
    tmask_free(&t);
    free(wq), free(wk), free(wv), free(q), free(k), free(v), free(rout), free(rw);
}

/* D2L §10.3.2: queries normal (2, 1, 20), keys ones (2, 10, 2), values
 * arange(40).reshape(1, 10, 4) twice, valid_lens [2, 6], hidden 8. All keys
 * are equal, so whatever the weights every valid key gets the same score. */
static void additive_d2l_example_any_weights_averages_valid_values(void **state)
{
    (void)state;
    const int64_t lens[2] = {2, 6};
    const double want_out[8] = {2, 3, 4, 5, 10, 11, 12, 13};
    double want_w[20];
    float keys[40], values[80], out[8], w[20];
    for (int j = 0; j < 10; j++) /* uniform over the first 2 and the first 6 keys */
        want_w[j] = j < 2 ? 0.5 : 0.0, want_w[10 + j] = j < 6 ? 1.0 / 6.0 : 0.0;
    for (int i = 0; i < 40; i++)
        keys[i] = 1.0f, values[i] = values[40 + i] = (float)i;
    attn_context *ctx = NULL;
    attn_mask *mask = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(mask, lens, 2, 1, 0), ATTN_OK);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        tu_rng rng;
        tu_rng_seed(&rng, seed);
        float *wq = frand(&rng, 8 * 20, 0.0f), *wk = frand(&rng, 8 * 2, 0.0f);
        float *wv = frand(&rng, 8, 0.0f), *q = frand(&rng, 2 * 20, 0.0f);
        attn_additive *op = NULL;
        assert_int_equal(attn_additive_create(&op, 20, 2, 8), ATTN_OK);
        assert_int_equal(attn_additive_set_weights(op, wq, wk, wv), ATTN_OK);
        tu_fill_nan(out, 8);
        tu_fill_nan(w, 20);
        assert_int_equal(attn_additive_forward(ctx, op, 2, 1, 10, 4, q, keys, values, mask, out, w),
                         ATTN_OK);
        expect_close(L_ADD, "additive_d2l_example", "out", out, want_out, 8, 4);
        expect_close(L_ADD, "additive_d2l_example", "weights", w, want_w, 20, 10);
        attn_additive_destroy(op);
        free(wq), free(wk), free(wv), free(q);
    }
    attn_mask_destroy(mask);
    attn_context_destroy(ctx);
}

/* ---- Nadaraya–Watson --------------------------------------------------- */

enum { NW_N = 50 };

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* D2L §10.2: 50 sorted x uniform in [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5²);
 * test x = 0, 0.1, ..., 4.9. */
static void d2l_nw_data(float *x_train, float *y_train, float *x_test)
{
    tu_rng rng;
    tu_rng_seed(&rng, 102);
    for (int i = 0; i < NW_N; i++)
        x_train[i] = (float)(5.0 * tu_uniform(&rng));
    qsort(x_train, NW_N, sizeof *x_train, cmp_float);
    for (int i = 0; i < NW_N; i++) {
        double x = x_train[i];
        y_train[i] = (float)(2.0 * sin(x) + pow(x, 0.8) + 0.5 * tu_normal(&rng));
        x_test[i] = (float)(0.1 * i);
    }
}

/* score = -((x - x_i)·w)²/2, softmax over i, f(x) = Σ weight_i y_i; double. */
static void ref_nw(int64_t nq, int64_t nk, const float *xq, const float *xk, const float *y,
                   double w, double *out, double *wts)
{
    double *row = dzero(nk);
    for (int64_t i = 0; i < nq; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < nk; j++) {
            double d = ((double)xq[i] - xk[j]) * w;
            row[j] = -d * d / 2.0;
        }
        ref_softmax(row, nk);
        for (int64_t j = 0; j < nk; j++)
            s += row[j] * y[j];
        out[i] = s;
        if (wts)
            memcpy(wts + i * nk, row, (size_t)nk * sizeof *row);
    }
    free(row);
}

/* w = 1 (non-parametric), 3 (narrower) and 0.5 (wider), with and without
 * weights. The outputs are judged as one row (tu_max_err's row = the vector). */
static void nw_d2l_data_w1_and_w3_match_reference(void **state)
{
    (void)state;
    float xt[NW_N], yt[NW_N], xq[NW_N], out[NW_N], w[NW_N * NW_N];
    double rout[NW_N], rw[NW_N * NW_N];
    const float ws[] = {1.0f, 3.0f, 0.5f};
    attn_context *ctx = NULL;
    d2l_nw_data(xt, yt, xq);
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    for (size_t t = 0; t < sizeof ws / sizeof ws[0]; t++) {
        tu_fill_nan(out, NW_N);
        tu_fill_nan(w, NW_N * NW_N);
        assert_int_equal(attn_nadaraya_watson(ctx, NW_N, NW_N, xq, xt, yt, ws[t], out, w), ATTN_OK);
        ref_nw(NW_N, NW_N, xq, xt, yt, ws[t], rout, rw);
        expect_close(L_NW, "nw_d2l", "out", out, rout, NW_N, NW_N);
        expect_close(L_NW, "nw_d2l", "weights", w, rw, NW_N * NW_N, NW_N);
        tu_fill_nan(out, NW_N); /* and without weights */
        assert_int_equal(attn_nadaraya_watson(ctx, NW_N, NW_N, xq, xt, yt, ws[t], out, NULL),
                         ATTN_OK);
        expect_close(L_NW, "nw_d2l_no_weights", "out", out, rout, NW_N, NW_N);
    }
    attn_context_destroy(ctx);
}

/* x = 1e3 and -1e4: every score is below -4e5, so exp underflows to 0 unless
 * the row maximum is subtracted; the answer is the nearest key's value. */
static void nw_far_queries_finite_and_equal_nearest_key(void **state)
{
    (void)state;
    float xt[NW_N], yt[NW_N], xtest[NW_N], out[3], w[3 * NW_N];
    const float xq[3] = {1e3f, -1e4f, 2.5f};
    const int nearest[2] = {NW_N - 1, 0}; /* x_train is sorted */
    double rout[3], rw[3 * NW_N];
    attn_context *ctx = NULL;
    d2l_nw_data(xt, yt, xtest);
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    for (int k = 1; k <= 3; k += 2) {
        tu_fill_nan(out, 3);
        tu_fill_nan(w, 3 * NW_N);
        assert_int_equal(attn_nadaraya_watson(ctx, 3, NW_N, xq, xt, yt, (float)k, out, w), ATTN_OK);
        ref_nw(3, NW_N, xq, xt, yt, k, rout, rw);
        assert_int_equal(tu_count_nonfinite(out, 3), 0);
        for (int i = 0; i < 2; i++) {
            /* the data's precondition: one key takes all the weight */
            assert_true(rw[i * NW_N + nearest[i]] > 1.0 - 1e-12);
            if (!(fabs(out[i] - yt[nearest[i]]) <= 1e-6 * fabs(yt[nearest[i]])))
                fail_msg("w %d query %g: got %.9g, nearest key's value %.9g", k, (double)xq[i],
                         (double)out[i], (double)yt[nearest[i]]);
        }
        expect_close(L_NW, "nw_far", "out", out, rout, 3, 1);
        expect_close(L_NW, "nw_far", "weights", w, rw, 3 * NW_N, NW_N);
    }
    attn_context_destroy(ctx);
}

static void nw_no_keys_gives_zeros_and_no_queries_is_ok(void **state)
{
    (void)state;
    const float xq[3] = {0.0f, 1.0f, -2.0f}, keys[2] = {0.5f, 1.5f}, vals[2] = {3.0f, 4.0f};
    float out[3], w[1];
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    for (int with_w = 0; with_w < 2; with_w++) {
        tu_fill_nan(out, 3);
        assert_int_equal(attn_nadaraya_watson(ctx, 3, 0, xq, NULL, NULL, 2.0f, out,
                                              with_w ? w : NULL), ATTN_OK);
        assert_true(out[0] == 0.0f && out[1] == 0.0f && out[2] == 0.0f);
    }
    assert_int_equal(attn_nadaraya_watson(ctx, 0, 2, NULL, keys, vals, 1.0f, NULL, NULL), ATTN_OK);
    assert_int_equal(attn_nadaraya_watson(ctx, 0, 0, NULL, NULL, NULL, 1.0f, NULL, NULL), ATTN_OK);
    attn_context_destroy(ctx);
}

/* ---- positional encoding ----------------------------------------------- */

static double ref_pe(int64_t pos, int64_t col, int64_t dim, double base)
{
    int64_t i = col / 2;
    double angle = (double)pos / pow(base, (double)(2 * i) / (double)dim);
    return col % 2 == 0 ? sin(angle) : cos(angle);
}

/* |got - ref| ≤ 1e-5, and relative error ≤ 1e-5 where |ref| > 1e-3. */
static void expect_pe(const char *what, const float *got, double ref, int64_t p, int64_t col)
{
    double abs_err = fabs((double)*got - ref);
    if (abs_err > pe_abs_err_seen)
        pe_abs_err_seen = abs_err;
    if (fabs(ref) > 1e-3 && abs_err / fabs(ref) > max_err_seen[L_PE])
        max_err_seen[L_PE] = abs_err / fabs(ref);
    if (!(abs_err <= TOL) || (fabs(ref) > 1e-3 && !(abs_err / fabs(ref) <= TOL)))
        fail_msg("%s: P[%lld, %lld] = %.9g, want %.9g", what, (long long)p, (long long)col,
                 (double)*got, ref);
}

/* Also D2L §10.6.3: column 0 has frequency 1, so P[pos, 0] = sin(pos) and
 * P[pos, 1] = cos(pos); and len 0 with out NULL is valid. */
static void positional_encoding_float64_to_position_1e4_col0_sin_pos(void **state)
{
    (void)state;
    const int64_t dims[] = {2, 32, 128}, starts[] = {0, 9000}, len = 1001;
    const float bases[] = {10000.0f, 100.0f};
    char what[96];
    float *out = fnan(len * 128);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 2; b++)
            for (int s = 0; s < 2; s++) {
                int64_t dim = dims[a], start = starts[s];
                snprintf(what, sizeof what, "dim %lld base %g start %lld", (long long)dim,
                         (double)bases[b], (long long)start);
                tu_fill_nan(out, (size_t)(len * dim));
                assert_int_equal(attn_positional_encoding(out, len, dim, start, bases[b]), ATTN_OK);
                for (int64_t p = 0; p < len; p++) {
                    for (int64_t col = 0; col < dim; col++)
                        expect_pe(what, out + p * dim + col, ref_pe(start + p, col, dim, bases[b]),
                                  p, col);
                    expect_pe("sin(pos)", out + p * dim, sin((double)(start + p)), p, 0);
                    expect_pe("cos(pos)", out + p * dim + 1, cos((double)(start + p)), p, 1);
                }
            }
    assert_int_equal(attn_positional_encoding(NULL, 0, 32, 0, 10000.0f), ATTN_OK);
    free(out);
}

/* ---- multi-head attention ---------------------------------------------- */

typedef struct mha_case {
    const char *name;
    int64_t batch, len_q, len_kv, embed, heads, kv_heads, kdim, vdim;
    int bias, self, causal, mask, bc, weights, nan_pad;
} mha_case;

enum { TL = ATTN_CAUSAL_TOP_LEFT, BR = ATTN_CAUSAL_BOTTOM_RIGHT };

/* embed_dim, num_heads, num_kv_heads, kdim, vdim */
#define E16 16, 4, 4, 16, 16
#define G6_2 24, 6, 2, 24, 24

static mha_case mha_cases[] = {
    /* name, batch, len_q, len_kv, (E16...), bias, self, causal, mask, bc, weights, nan_pad */
    {"mha_self_attention_same_pointer", 2, 7, 7, E16, 1, 1, 0, MK_NONE, 0, 1, 0},
    {"mha_self_attention_no_bias", 2, 7, 7, E16, 0, 1, 0, MK_NONE, 0, 1, 0},
    {"mha_cross_len_q_ne_len_kv", 3, 5, 11, 16, 2, 2, 16, 16, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_kdim_vdim_ne_embed_dim", 2, 6, 9, 12, 3, 3, 10, 7, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_kdim_vdim_no_bias_no_weights", 2, 6, 9, 12, 3, 3, 5, 20, 0, 0, 0, MK_NONE, 0, 0, 0},
    {"mha_gqa_6_heads_2_kv_heads", 2, 8, 10, G6_2, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_gqa_6_heads_3_kv_heads_kdim_vdim", 2, 8, 10, 36, 6, 3, 14, 9, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_gqa_6_3_self_no_bias", 2, 9, 9, 24, 6, 3, 24, 24, 0, 1, 0, MK_NONE, 0, 1, 0},
    {"mha_mqa_6_heads_1_kv_head", 2, 8, 10, 24, 6, 1, 24, 24, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_mask_lengths_per_batch", 3, 6, 9, E16, 1, 0, 0, MK_LEN_BATCH, 0, 1, 0},
    {"mha_nan_padding_never_read", 3, 6, 9, 16, 4, 4, 8, 12, 1, 0, 0, MK_LEN_BATCH, 0, 1, 1},
    {"mha_mask_lengths_per_query", 3, 6, 9, E16, 1, 0, 0, MK_LEN_QUERY, 0, 1, 0},
    {"mha_mask_bool_heads_num_heads", 2, 6, 9, E16, 1, 0, 0, MK_BOOL, 0, 1, 0},
    {"mha_mask_bool_heads_1_bcast_batch", 3, 6, 9, E16, 1, 0, 0, MK_BOOL, BC_H | BC_B, 1, 0},
    {"mha_mask_bool_heads_num_heads_bcast_query", 2, 6, 9, E16, 1, 0, 0, MK_BOOL, BC_Q, 1, 0},
    {"mha_mask_bias_neg_inf_heads_num_heads", 2, 6, 9, E16, 1, 0, 0, MK_BIAS, 0, 1, 0},
    {"mha_mask_bias_heads_1_bcast_query", 2, 6, 9, E16, 1, 0, 0, MK_BIAS, BC_H | BC_Q, 1, 0},
    {"mha_gqa_bool_mask_heads_num_heads", 2, 7, 8, G6_2, 1, 0, 0, MK_BOOL, 0, 1, 0},
    {"mha_mqa_bias_mask_heads_1", 2, 7, 8, 24, 6, 1, 24, 24, 1, 0, 0, MK_BIAS, BC_H, 1, 0},
    {"mha_causal_top_left_len_q_lt_len_kv", 2, 6, 9, E16, 1, 0, TL, MK_NONE, 0, 1, 0},
    {"mha_causal_top_left_len_q_gt_len_kv", 2, 9, 6, E16, 1, 0, TL, MK_NONE, 0, 1, 0},
    {"mha_causal_bottom_right_decoding", 2, 4, 10, E16, 1, 0, BR, MK_NONE, 0, 1, 0},
    {"mha_causal_bottom_right_rows_see_nothing", 2, 9, 6, E16, 1, 0, BR, MK_NONE, 0, 1, 0},
    {"mha_causal_top_left_self_and_lengths", 2, 8, 8, E16, 1, 1, TL, MK_LEN_BATCH, 0, 1, 0},
    {"mha_causal_bottom_right_gqa_bias_no_weights", 2, 5, 9, G6_2, 1, 0, BR, MK_BIAS, 0, 0, 0},
    {"mha_long_gqa_bool_bcast_batch_bottom_right", 3, 150, 170, 48, 6, 2, 40, 24, 1, 0, BR,
     MK_BOOL, BC_B, 1, 0},
    {"mha_batch_0", 0, 5, 5, E16, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_len_q_0", 2, 0, 5, E16, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_len_kv_0_out_is_bo", 2, 5, 0, 16, 4, 4, 10, 6, 1, 0, 0, MK_NONE, 0, 1, 0},
    {"mha_len_kv_0_no_bias_out_is_zero", 2, 5, 0, E16, 0, 0, 0, MK_NONE, 0, 0, 0},
    {"mha_long_self_causal_150", 2, 150, 150, 32, 4, 4, 32, 32, 1, 1, TL, MK_NONE, 0, 1, 0},
    {"mha_long_cross_gqa_lengths_per_query", 2, 150, 140, 48, 6, 2, 20, 24, 1, 0, 0, MK_LEN_QUERY,
     0, 1, 0},
    {"mha_long_bias_heads_1_bottom_right", 1, 130, 160, 32, 8, 8, 32, 32, 1, 0, BR, MK_BIAS, BC_H,
     0, 0},
};

typedef struct mha_run {
    attn_mha *mha;
    float *w[4], *b[4]; /* ATTN_PROJ_Q, K, V, O */
    float *query, *key, *value;
    tmask t;
} mha_run;

/* Projections, per-head masked softmax attention (head h reads kv head
 * g = h / (heads / kv_heads)), concatenation, output projection; double. */
static void ref_mha(const mha_case *c, const mha_run *r, double *out, double *wts)
{
    int64_t B = c->batch, Lq = c->len_q, Lk = c->len_kv, E = c->embed, H = c->heads;
    int64_t hd = E / H, kvd = c->kv_heads * hd, group = H / c->kv_heads;
    double *Q = dzero(B * Lq * E), *K = dzero(B * Lk * kvd), *V = dzero(B * Lk * kvd);
    double *A = dzero(B * Lq * E), *row = dzero(Lk), scale = 1.0 / sqrt((double)hd);
    ref_linear(r->query, NULL, B * Lq, E, r->w[0], r->b[0], E, Q);
    ref_linear(r->key, NULL, B * Lk, c->kdim, r->w[1], r->b[1], kvd, K);
    ref_linear(r->value, NULL, B * Lk, c->vdim, r->w[2], r->b[2], kvd, V);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                int64_t g = h / group;
                const double *qi = Q + (b * Lq + i) * E + h * hd;
                for (int64_t j = 0; j < Lk; j++) {
                    const double *kj = K + (b * Lk + j) * kvd + g * hd;
                    double add = tmask_add(&r->t, b, h, i, j), s = 0.0;
                    if ((c->causal == TL && j > i) || (c->causal == BR && j > i + Lk - Lq))
                        add = -INFINITY;
                    for (int64_t d = 0; d < hd; d++)
                        s += qi[d] * kj[d];
                    row[j] = add == -INFINITY ? -INFINITY : scale * s + add;
                }
                ref_softmax(row, Lk);
                if (wts)
                    memcpy(wts + ((b * H + h) * Lq + i) * Lk, row, (size_t)Lk * sizeof *row);
                for (int64_t d = 0; d < hd; d++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        if (row[j] != 0.0)
                            s += row[j] * V[(b * Lk + j) * kvd + g * hd + d];
                    A[(b * Lq + i) * E + h * hd + d] = s;
                }
            }
    ref_linear(NULL, A, B * Lq, E, r->w[3], r->b[3], E, out); /* concat_h(A_h) Woᵀ + bo */
    free(Q), free(K), free(V), free(A), free(row);
}

static void run_mha_case(void **state)
{
    const mha_case *c = *state;
    int64_t nq = c->batch * c->len_q, nk = c->batch * c->len_kv;
    int64_t no = nq * c->embed, nw = c->batch * c->heads * c->len_q * c->len_kv;
    int64_t E = c->embed, kvd = c->kv_heads * (E / c->heads);
    const int64_t out_f[4] = {E, kvd, kvd, E}, in_f[4] = {E, c->kdim, c->vdim, E};
    mha_run r = {0};
    attn_context *ctx[2];
    tu_rng rng;
    tu_rng_seed(&rng, seed_of(c->name));
    assert_int_equal(attn_mha_create(&r.mha, E, c->heads, c->kv_heads, c->kdim, c->vdim, c->bias),
                     ATTN_OK);
    for (int p = 0; p < 4; p++) { /* nn.Linear-like init: U(-1/sqrt(in), 1/sqrt(in)) */
        r.w[p] = frand(&rng, out_f[p] * in_f[p], (float)(1.0 / sqrt((double)in_f[p])));
        r.b[p] = c->bias ? frand(&rng, out_f[p], 0.5f) : NULL;
        assert_int_equal(attn_mha_set_weights(r.mha, (attn_proj)p, r.w[p], r.b[p]), ATTN_OK);
    }
    assert_int_equal(attn_mha_set_causal(r.mha, (attn_causal)c->causal), ATTN_OK);
    r.query = frand(&rng, nq * E, 0.0f); /* self-attention: one pointer thrice */
    r.key = c->self ? r.query : frand(&rng, nk * c->kdim, 0.0f);
    r.value = c->self ? r.query : frand(&rng, nk * c->vdim, 0.0f);
    tmask_make(&r.t, &rng, c->mask, c->bc, c->batch, c->heads, c->len_q, c->len_kv);
    if (c->nan_pad)
        nan_padding(&r.t, c->batch, r.key, c->kdim, r.value, c->vdim);
    contexts_1_and_2_threads(ctx);
    float *out[2] = {fnan(no), fnan(no)}, *w[2] = {fnan(nw), fnan(nw)};
    double *rout = dzero(no), *rw = dzero(nw);
    for (int x = 0; x < 2; x++)
        assert_int_equal(attn_mha_forward(ctx[x], r.mha, c->batch, c->len_q, c->len_kv,
                                          nz(r.query, nq * c->embed), nz(r.key, nk * c->kdim),
                                          nz(r.value, nk * c->vdim), r.t.mask,
                                          no ? out[x] : NULL, c->weights ? w[x] : NULL),
                         ATTN_OK);
    ref_mha(c, &r, rout, rw);
    expect_close(L_MHA, c->name, "out", out[0], rout, no, c->embed);
    if (c->weights)
        expect_close(L_MHA, c->name, "weights", w[0], rw, nw, c->len_kv);
    if (c->len_kv == 0) /* zero attention: out is exactly the output bias */
        for (int64_t x = 0; x < no; x++)
            assert_true(out[0][x] == (c->bias ? r.b[3][x % c->embed] : 0.0f));
    expect_same_bits_and_free(c->name, "out", out, no);
    expect_same_bits_and_free(c->name, "weights", w, nw);
    free(rout), free(rw);
    attn_context_destroy(ctx[0]), attn_context_destroy(ctx[1]);
    attn_mha_destroy(r.mha);
    tmask_free(&r.t);
    for (int p = 0; p < 4; p++)
        free(r.w[p]), free(r.b[p]);
    if (!c->self)
        free(r.key), free(r.value);
    free(r.query);
}

/* ---- main --------------------------------------------------------------- */

#define N_ADD (sizeof add_cases / sizeof add_cases[0])
#define N_MHA (sizeof mha_cases / sizeof mha_cases[0])

int main(void)
{
    static struct CMUnitTest tests[8 + N_ADD + N_MHA] = {
        cmocka_unit_test(additive_d2l_example_any_weights_averages_valid_values),
        cmocka_unit_test(nw_d2l_data_w1_and_w3_match_reference),
        cmocka_unit_test(nw_far_queries_finite_and_equal_nearest_key),
        cmocka_unit_test(nw_no_keys_gives_zeros_and_no_queries_is_ok),
        cmocka_unit_test(positional_encoding_float64_to_position_1e4_col0_sin_pos),
    };
    size_t n = 0;
    while (tests[n].name)
        n++;
    for (size_t i = 0; i < N_ADD; i++)
        tests[n++] = (struct CMUnitTest){add_cases[i].name, run_additive_case, NULL, NULL,
                                         &add_cases[i]};
    for (size_t i = 0; i < N_MHA; i++)
        tests[n++] =
            (struct CMUnitTest){mha_cases[i].name, run_mha_case, NULL, NULL, &mha_cases[i]};
    int rc = _cmocka_run_group_tests("test_layers", tests, n, NULL, NULL);
    for (int l = 0; l < L_COUNT; l++)
        printf("max tu_max_err %-22s %.3g\n", layer_name[l], max_err_seen[l]);
    printf("max abs error positional (abs)    %.3g\n", pe_abs_err_seen);
    return rc;
}
