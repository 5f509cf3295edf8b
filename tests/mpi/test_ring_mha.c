/*
 * test_ring_mha.c — the MHA layer over the ring (attn_mpi_ring_mha_forward
 * and _backward) under `mpirun -np N` (tests/mpi/meson.build: 2 and 3
 * ranks). Every rank makes the same layer and the same whole sequence from
 * one seed, and computes:
 *   - the float64 forward of the layer (ru_ref_mha, tests/reliability_util.c);
 *   - one process's attn_mha_forward_train and attn_mha_backward over the
 *     whole sequence (whose gradients tests/test_mha_backward.c checks
 *     against float64 central differences);
 *   - the ring over its own rows (attn_mpi_ring_positions).
 * It checks:
 *  1. out against float64 and against one process, within 1e-5 of each
 *     row's largest value; d_query, d_key, d_value (this rank's rows) and
 *     d_params (the whole sequence's, summed over the ranks) against one
 *     process within 1e-5 (of each row's largest value; err_grad_rows and
 *     err_params say where not), and d_params the same bits on every rank;
 *     causal
 *     and not, with and without bias, GQA and MQA, kdim ≠ vdim ≠ embed_dim,
 *     lengths divisible by 2 × ranks or not, shorter than the ranks, empty;
 *  2. self-attention: one buffer as query, key and value, and one as
 *     d_query, d_key and d_value, gets their sum, as attn_mha_backward's;
 *  3. the errors, the same status on every rank: a layer whose heads are
 *     not the ring's, a layer with RoPE, a NULL mha on the last rank only,
 *     parameters that differ between ranks, d_params NULL on one rank only,
 *     an empty act, parameters changed between forward and backward.
 * Verdicts are reduced over the ranks before any assert (as test_ring.c).
 */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attn_mpi.h"
#include "mpi_test_util.h"
#include "reliability_util.h"
#include "test_util.h"

#define TOL 1e-5

static int rank, nranks;
static double worst_out_ref, worst_out_single, worst_grad_single;

typedef struct layer_case {
    int64_t batch, seq_len, embed, heads, kv_heads, kdim, vdim;
    int bias, causal, self;   /* self: query = key = value (kdim = vdim = embed) */
} layer_case;

/* The layer and the whole sequence, as every rank makes them. */
typedef struct whole {
    layer_case c;
    attn_mha *mha;
    float *w[4], *b[4];
    float *query, *key, *value, *d_out;
    float *out, *d_query, *d_key, *d_value, *d_params;  /* one process's libattn */
    double *r_out;                                      /* float64 */
    int64_t count;
} whole;

static int64_t features(const layer_case *c, int which)
{
    return which == 0 ? c->embed : which == 1 ? c->kdim : c->vdim;
}

static void whole_make(whole *w, const layer_case *c, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->c = *c;
    const int64_t hd = c->embed / c->heads, kv = c->kv_heads * hd, rows = c->batch * c->seq_len;
    const int64_t out_f[4] = {c->embed, kv, kv, c->embed};
    const int64_t in_f[4] = {c->embed, c->kdim, c->vdim, c->embed};
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    assert_int_equal(attn_mha_create(&w->mha, c->embed, c->heads, c->kv_heads, c->kdim, c->vdim,
                                     c->bias), ATTN_OK);
    for (int p = 0; p < 4; p++) {
        w->w[p] = floats(out_f[p] * in_f[p]);
        w->b[p] = c->bias ? floats(out_f[p]) : NULL;
        float bound = 1.0f / sqrtf((float)in_f[p]);
        tu_fill_uniform(&rng, w->w[p], (size_t)(out_f[p] * in_f[p]), -bound, bound);
        if (c->bias)
            tu_fill_uniform(&rng, w->b[p], (size_t)out_f[p], -0.5f, 0.5f);
        assert_int_equal(attn_mha_set_weights(w->mha, (attn_proj)p, w->w[p], w->b[p]), ATTN_OK);
    }
    if (c->causal)
        assert_int_equal(attn_mha_set_causal(w->mha, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
    w->query = floats(rows * c->embed);
    tu_fill_normal(&rng, w->query, (size_t)(rows * c->embed), 0.0f, 1.0f);
    w->key = c->self ? w->query : floats(rows * c->kdim);
    w->value = c->self ? w->query : floats(rows * c->vdim);
    if (!c->self) {
        tu_fill_normal(&rng, w->key, (size_t)(rows * c->kdim), 0.0f, 1.0f);
        tu_fill_normal(&rng, w->value, (size_t)(rows * c->vdim), 0.0f, 1.0f);
    }
    w->d_out = floats(rows * c->embed);
    tu_fill_uniform(&rng, w->d_out, (size_t)(rows * c->embed), -1.0f, 1.0f);

    assert_int_equal(attn_mha_param_count(w->mha, &w->count), ATTN_OK);
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    w->out = floats(rows * c->embed);
    w->d_query = floats(rows * c->embed);
    w->d_key = c->self ? w->d_query : floats(rows * c->kdim);
    w->d_value = c->self ? w->d_query : floats(rows * c->vdim);
    w->d_params = floats(w->count);
    assert_int_equal(attn_mha_forward_train(ctx, w->mha, c->batch, c->seq_len, c->seq_len,
                                            w->query, w->key, w->value, NULL, w->out, NULL,
                                            act), ATTN_OK);
    assert_int_equal(attn_mha_backward(ctx, w->mha, act, w->d_out, w->d_query, w->d_key,
                                       w->d_value, w->d_params), ATTN_OK);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);

    ru_mha rm = {.embed = c->embed, .heads = c->heads, .kv_heads = c->kv_heads,
                 .kdim = c->kdim, .vdim = c->vdim,
                 .causal = c->causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE,
                 .w = {w->w[0], w->w[1], w->w[2], w->w[3]},
                 .b = {w->b[0], w->b[1], w->b[2], w->b[3]}};
    w->r_out = calloc((size_t)(rows * c->embed + 1), sizeof(double));
    assert_non_null(w->r_out);
    ru_ref_mha(&rm, c->batch, c->seq_len, c->seq_len, w->query, w->key, w->value, NULL,
               w->r_out, NULL);
}

static void whole_free(whole *w)
{
    attn_mha_destroy(w->mha);
    for (int p = 0; p < 4; p++)
        free(w->w[p]), free(w->b[p]);
    if (!w->c.self)
        free(w->key), free(w->value), free(w->d_key), free(w->d_value);
    void *all[] = {w->query, w->d_out, w->out, w->d_query, w->d_params, w->r_out};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* This rank's rows (b, pos[i]) of a whole [batch, seq_len, f] tensor. */
static float *local_rows(const layer_case *c, const float *src, int64_t f, const int64_t *pos,
                         int64_t n)
{
    float *dst = floats(c->batch * n * f);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + (b * n + i) * f, src + (b * c->seq_len + pos[i]) * f,
                   (size_t)f * sizeof(float));
    return dst;
}

/* tu_max_err of local rows against the same rows of a whole reference
 * (double, or float when ref_f is not NULL). */
static double err_rows(const layer_case *c, const float *local, const double *ref_d,
                       const float *ref_f, int64_t f, const int64_t *pos, int64_t n)
{
    int64_t count = c->batch * n * f;
    double *want = calloc((size_t)(count + 1), sizeof *want);
    assert_non_null(want);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < f; j++) {
                int64_t from = (b * c->seq_len + pos[i]) * f + j;
                want[(b * n + i) * f + j] = ref_f ? (double)ref_f[from] : ref_d[from];
            }
    double e = tu_max_err(local, want, count, f, NULL);
    free(want);
    return e;
}

/* A gradient's local rows against one process's: |a − b| over the row's
 * largest |b|; but d_query's rows of a causal query that sees one key
 * (position 0) are 0 in theory, and both results then hold only the
 * rounding of terms of the usual size, which are judged against the whole
 * tensor's largest |b| (zero_rows). */
static double err_grad_rows(const layer_case *c, const float *local, const float *ref,
                            int64_t f, const int64_t *pos, int64_t n, int zero_rows)
{
    double whole_max = 0.0, worst = 0.0;
    for (int64_t i = 0; i < c->batch * c->seq_len * f; i++)
        whole_max = fmax(whole_max, fabs(ref[i]));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t i = 0; i < n; i++) {
            const float *want = ref + (b * c->seq_len + pos[i]) * f;
            const float *got = local + (b * n + i) * f;
            double row_max = 0.0;
            for (int64_t j = 0; j < f; j++)
                row_max = fmax(row_max, fabs(want[j]));
            double scale = zero_rows && c->causal && pos[i] == 0 ? whole_max : row_max;
            for (int64_t j = 0; j < f; j++) {
                double e = fabs((double)got[j] - want[j]);
                e = scale > 0.0 ? e / scale : (e == 0.0 ? 0.0 : INFINITY);
                worst = isnan(e) ? INFINITY : fmax(worst, e);
            }
        }
    return worst;
}

/* d_params against one process's, block by block of attn_mha_get_params'
 * layout (Wq, Wk, Wv, [bq, bk, bv], Wo, [bo]), each against its own largest
 * value; but bk's gradient is 0 in theory (q·bk shifts a whole softmax row),
 * so it holds only rounding and is judged against Wk's largest value. */
static double err_params(const whole *w, const float *got)
{
    const layer_case *c = &w->c;
    const int64_t kv = c->kv_heads * (c->embed / c->heads), E = c->embed;
    const int64_t sizes[8] = {E * E, kv * c->kdim, kv * c->vdim, c->bias ? E : 0,
                              c->bias ? kv : 0, c->bias ? kv : 0, E * E, c->bias ? E : 0};
    int64_t start[8], at = 0;
    for (int b = 0; b < 8; b++)
        start[b] = at, at += sizes[b];
    assert_int_equal(at, w->count);
    double worst = 0.0;
    for (int b = 0; b < 8; b++) {
        int judge = b == 4 ? 1 : b;  /* bk against Wk */
        double scale = 0.0;
        for (int64_t i = 0; i < sizes[judge]; i++)
            scale = fmax(scale, fabs(w->d_params[start[judge] + i]));
        for (int64_t i = 0; i < sizes[b]; i++) {
            double e = fabs((double)got[start[b] + i] - w->d_params[start[b] + i]);
            e = scale > 0.0 ? e / scale : (e == 0.0 ? 0.0 : INFINITY);
            worst = isnan(e) ? INFINITY : fmax(worst, e);
        }
    }
    return worst;
}

/* d_params the same bits on every rank: rank 0's, broadcast, compared. */
static int same_on_every_rank(const float *d, int64_t count)
{
    float *zero = floats(count);
    if (rank == 0)
        memcpy(zero, d, (size_t)count * sizeof(float));
    assert_int_equal(MPI_Bcast(zero, (int)count, MPI_FLOAT, 0, MPI_COMM_WORLD), MPI_SUCCESS);
    int same = memcmp(zero, d, (size_t)count * sizeof(float)) == 0, all = 0;
    free(zero);
    assert_int_equal(MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    return all;
}

static attn_mpi_ring *ring_for(const layer_case *c)
{
    attn_mpi_ring *ring = NULL;
    int64_t hd = c->embed / c->heads;
    assert_int_equal(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, c->batch, c->heads,
                                          c->kv_heads, c->seq_len, hd, hd), ATTN_OK);
    return ring;
}

/* After a case's forward and backward: inference (act NULL) gives the
 * training forward's out; the backward repeated with d_params alone gives
 * the same d_params (act is only read); with kdim != embed_dim, d_key ==
 * d_query is refused on every rank. */
static void check_repeatable(const layer_case *c, attn_context *ctx, const attn_mpi_ring *ring,
                             const whole *w, float *const in[3], attn_mpi_activations *act,
                             const float *d_out, const float *out, const float *d_params,
                             int64_t n)
{
    const int64_t no = c->batch * n * c->embed;
    float *again = floats(no), *d_params_again = floats(w->count);
    assert_int_equal(attn_mpi_ring_mha_forward(ctx, ring, w->mha, in[0], in[1], in[2], again,
                                               NULL), ATTN_OK);
    assert_true(same_bits_everywhere(again, out, no));
    assert_int_equal(attn_mpi_ring_mha_backward(ctx, ring, w->mha, act, d_out, NULL, NULL,
                                                NULL, d_params_again), ATTN_OK);
    assert_true(same_bits_everywhere(d_params_again, d_params, w->count));
    if (c->kdim != c->embed && c->seq_len > 0) {
        float *dx = floats(c->batch * n * (c->kdim > c->embed ? c->kdim : c->embed));
        attn_status st = attn_mpi_ring_mha_backward(ctx, ring, w->mha, act, d_out, dx, dx,
                                                    NULL, NULL);
        int mine = st == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "d_key"), all;
        assert_int_equal(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
                         MPI_SUCCESS);
        if (!all)
            fail_msg("rank %d: d_key == d_query with kdim %lld != embed_dim %lld: %s", rank,
                     (long long)c->kdim, (long long)c->embed, attn_last_error());
        free(dx);
    }
    free(again), free(d_params_again);
}

static void check_case(const layer_case *c, uint64_t seed)
{
    whole w;
    whole_make(&w, c, seed);
    attn_mpi_ring *ring = ring_for(c);
    int64_t n = 0;
    assert_int_equal(attn_mpi_ring_local_len(ring, &n), ATTN_OK);
    int64_t *pos = malloc((size_t)(n + 1) * sizeof *pos);
    assert_non_null(pos);
    assert_int_equal(attn_mpi_ring_positions(ring, pos), ATTN_OK);
    const int64_t E = c->embed;
    float *in[3], *grads[3];
    for (int i = 0; i < 3; i++)
        in[i] = (c->self && i > 0) ? in[0]
                                   : local_rows(c, i == 0 ? w.query : i == 1 ? w.key : w.value,
                                                features(c, i), pos, n);
    float *d_out = local_rows(c, w.d_out, E, pos, n), *out = floats(c->batch * n * E);
    for (int i = 0; i < 3; i++)
        grads[i] = (c->self && i > 0) ? grads[0] : floats(c->batch * n * features(c, i));
    float *d_params = floats(w.count);

    attn_context *ctx = NULL;
    attn_mpi_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mpi_activations_create(&act), ATTN_OK);
    attn_status fs = attn_mpi_ring_mha_forward(ctx, ring, w.mha, in[0], in[1], in[2], out, act);
    if (fs != ATTN_OK)
        fail_msg("rank %d: forward: %s", rank, attn_last_error());
    attn_status bs = attn_mpi_ring_mha_backward(ctx, ring, w.mha, act, d_out, grads[0],
                                                grads[1], grads[2], d_params);
    if (bs != ATTN_OK)
        fail_msg("rank %d: backward: %s", rank, attn_last_error());

    double e_ref = max_over_ranks(err_rows(c, out, w.r_out, NULL, E, pos, n));
    double e_single = max_over_ranks(err_rows(c, out, NULL, w.out, E, pos, n));
    const float *single_grads[3] = {w.d_query, w.d_key, w.d_value};
    double e_grad = 0.0;
    for (int i = 0; i < (c->self ? 1 : 3); i++)
        e_grad = fmax(e_grad, err_grad_rows(c, grads[i], single_grads[i], features(c, i), pos,
                                            n, i == 0));
    e_grad = fmax(max_over_ranks(e_grad), max_over_ranks(err_params(&w, d_params)));
    int same = same_on_every_rank(d_params, w.count);
    /* RING_MHA_VERBOSE=1 prints every case's errors; a failing case is always printed. */
    bool failed = e_ref > TOL || e_single > TOL || e_grad > TOL || !same;
    if (rank == 0 && (failed || getenv("RING_MHA_VERBOSE")))
        fprintf(stderr, "case B%lld L%lld E%lld H%lld/%lld kd%lld vd%lld bias%d causal%d "
                "self%d: out vs float64 %.2e, vs one process %.2e; gradients %.2e; "
                "d_params same on every rank: %d\n", (long long)c->batch,
                (long long)c->seq_len, (long long)E, (long long)c->heads,
                (long long)c->kv_heads, (long long)c->kdim, (long long)c->vdim, c->bias,
                c->causal, c->self, e_ref, e_single, e_grad, same);
    worst_out_ref = fmax(worst_out_ref, e_ref);
    worst_out_single = fmax(worst_out_single, e_single);
    worst_grad_single = fmax(worst_grad_single, e_grad);
    assert_true(e_ref <= TOL);
    assert_true(e_single <= TOL);
    assert_true(e_grad <= TOL);
    assert_true(same);
    check_repeatable(c, ctx, ring, &w, in, act, d_out, out, d_params, n);

    attn_mpi_activations_destroy(act);
    attn_context_destroy(ctx);
    for (int i = 0; i < 3; i++)
        if (!(c->self && i > 0))
            free(in[i]), free(grads[i]);
    free(d_out), free(out), free(d_params), free(pos);
    attn_mpi_ring_destroy(ring);
    whole_free(&w);
}

static void test_against_one_process(void **state)
{
    (void)state;
    const layer_case cases[] = {
        /* batch, len, E, H, Hkv, kdim, vdim, bias, causal, self */
        {2, 48, 16, 4, 4, 16, 16, 1, 0, 0},
        {2, 48, 16, 4, 4, 16, 16, 1, 1, 0},
        {1, 61, 24, 6, 3, 10, 7, 1, 1, 0},    /* GQA, kdim != vdim != E, 61 % 2P != 0 */
        {2, 37, 16, 4, 1, 16, 12, 0, 1, 0},   /* MQA, no bias */
        {1, 37, 16, 4, 2, 16, 16, 0, 0, 0},
        {2, 40, 16, 2, 2, 16, 16, 1, 1, 1},   /* self-attention: shared buffers */
        {2, 3, 8, 2, 2, 8, 8, 1, 1, 0},       /* shorter than 2 × ranks: ranks hold nothing */
        {1, 1, 8, 2, 1, 5, 6, 1, 0, 0},
        {2, 0, 8, 2, 2, 8, 8, 1, 1, 0},       /* empty */
        {1, 200, 32, 4, 2, 32, 32, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], 0x5eed0 + i);
    if (rank == 0)
        fprintf(stderr, "MHA ring on %d ranks: out vs float64 %.2e, vs one process %.2e; "
                "gradients vs one process %.2e\n", nranks, worst_out_ref, worst_out_single,
                worst_grad_single);
}

/* ---- errors: every rank returns the same status and message -------------- */

static void test_errors(void **state)
{
    (void)state;
    layer_case c = {2, 13, 16, 4, 2, 16, 16, 1, 1, 0};
    whole w;
    whole_make(&w, &c, 99);
    attn_mpi_ring *ring = ring_for(&c);
    int64_t n = 0;
    assert_int_equal(attn_mpi_ring_local_len(ring, &n), ATTN_OK);
    const int64_t rows = c.batch * n;
    float *x = floats(rows * c.embed), *out = floats(rows * c.embed);
    float *d_out = floats(rows * c.embed), *dx = floats(rows * c.embed);
    float *d_params = floats(w.count);
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    tu_fill_normal(&rng, x, (size_t)(rows * c.embed), 0.0f, 1.0f);
    tu_fill_normal(&rng, d_out, (size_t)(rows * c.embed), 0.0f, 1.0f);
    float *out_before = floats(rows * c.embed);
    memcpy(out_before, out, (size_t)(rows * c.embed) * sizeof(float));
    attn_context *ctx = NULL;
    attn_mpi_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mpi_activations_create(&act), ATTN_OK);

    /* An empty act, before any forward. */
    expect_everywhere(attn_mpi_ring_mha_backward(ctx, ring, w.mha, act, d_out, dx, dx, dx,
                                                 d_params), ATTN_ERR_STATE, "act");
    /* A layer whose heads are not the ring's. */
    attn_mha *other = NULL;
    assert_int_equal(attn_mha_create(&other, 16, 2, 2, 16, 16, 1), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, other, x, x, x, out, act),
                      ATTN_ERR_SHAPE_MISMATCH, "num_heads");
    attn_mha_destroy(other);
    /* RoPE: the ring does not rotate. */
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(&rope, 4, 4, 10000.0f, ATTN_ROPE_HALF), ATTN_OK);
    assert_int_equal(attn_mha_set_rope(w.mha, rope), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, w.mha, x, x, x, out, act),
                      ATTN_ERR_UNSUPPORTED, "RoPE");
    assert_int_equal(attn_mha_set_rope(w.mha, NULL), ATTN_OK);
    attn_rope_destroy(rope);
    /* A window, and dropout: neither is applied by the ring. */
    assert_int_equal(attn_mha_set_window(w.mha, 4, -1), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, w.mha, x, x, x, out, act),
                      ATTN_ERR_UNSUPPORTED, "window");
    assert_int_equal(attn_mha_set_window(w.mha, -1, -1), ATTN_OK);
    assert_int_equal(attn_mha_set_dropout(w.mha, 0.1f, 5), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, w.mha, x, x, x, out, act),
                      ATTN_ERR_UNSUPPORTED, "dropout");
    assert_int_equal(attn_mha_set_dropout(w.mha, 0.0f, 5), ATTN_OK);
    /* A NULL layer on the last rank only. */
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, rank == nranks - 1 ? NULL : w.mha,
                                                x, x, x, out, act),
                      ATTN_ERR_NULL_POINTER, "mha");
    /* Parameters that differ on one rank. */
    float *params = floats(w.count);
    assert_int_equal(attn_mha_get_params(w.mha, params), ATTN_OK);
    const float kept = params[w.count - 1];
    if (rank == 1)
        params[w.count - 1] += 1.0f;
    assert_int_equal(attn_mha_set_params(w.mha, params), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_forward(ctx, ring, w.mha, x, x, x, out, act),
                      ATTN_ERR_STATE, "layers");
    params[w.count - 1] = kept;
    assert_int_equal(attn_mha_set_params(w.mha, params), ATTN_OK);
    /* None of these wrote out. */
    int untouched = memcmp(out, out_before, (size_t)(rows * c.embed) * sizeof(float)) == 0;
    assert_true(untouched);

    /* A good forward; then failing backwards, which write nothing: d_params
     * on some ranks only, an output overlapping d_out, another ring of the
     * same sizes, a changed layer. */
    assert_int_equal(attn_mpi_ring_mha_forward(ctx, ring, w.mha, x, x, x, out, act), ATTN_OK);
    float *dx_before = floats(rows * c.embed), *d_params_before = floats(w.count);
    memcpy(dx_before, dx, (size_t)(rows * c.embed) * sizeof(float));
    memcpy(d_params_before, d_params, (size_t)w.count * sizeof(float));
    expect_everywhere(attn_mpi_ring_mha_backward(ctx, ring, w.mha, act, d_out, dx, dx, dx,
                                                 rank == 0 ? NULL : d_params),
                      ATTN_ERR_STATE, "gradients");
    expect_everywhere(attn_mpi_ring_mha_backward(ctx, ring, w.mha, act, d_out, dx, d_out, dx,
                                                 d_params),
                      ATTN_ERR_INVALID_ARGUMENT, "d_key");
    attn_mpi_ring *twin = ring_for(&c);
    expect_everywhere(attn_mpi_ring_mha_backward(ctx, twin, w.mha, act, d_out, dx, dx, dx,
                                                 d_params), ATTN_ERR_STATE, "ring");
    attn_mpi_ring_destroy(twin);
    assert_true(same_bits_everywhere(dx, dx_before, rows * c.embed));
    assert_true(same_bits_everywhere(d_params, d_params_before, w.count));
    free(dx_before), free(d_params_before);
    params[0] += 0.5f;
    assert_int_equal(attn_mha_set_params(w.mha, params), ATTN_OK);
    expect_everywhere(attn_mpi_ring_mha_backward(ctx, ring, w.mha, act, d_out, dx, dx, dx,
                                                 d_params), ATTN_ERR_STATE, "changed");

    free(params), free(x), free(out), free(d_out), free(dx), free(d_params), free(out_before);
    attn_mpi_activations_destroy(act);
    attn_context_destroy(ctx);
    attn_mpi_ring_destroy(ring);
    whole_free(&w);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_one_process),
        cmocka_unit_test(test_errors),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
