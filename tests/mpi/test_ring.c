/*
 * test_ring.c — libattn-mpi under `mpirun -np N` (tests/mpi/meson.build runs
 * it with 2 and 3 ranks). Every rank makes the same whole problem from one
 * seed, computes the float64 reference (tests/test_util.c) and the single-
 * process libattn result over the whole sequence, runs the ring on its own
 * positions and compares its rows with both:
 *
 *  1. ring forward (out, lse) and backward (d_q, d_k, d_v): within 1e-5 of
 *     one process's attn_sdpa_forward/backward and of float64, causal and
 *     not, MHA, GQA and MQA, both layouts, lengths divisible by the ranks
 *     or not, shorter than 2 × ranks, and empty;
 *  2. the zig-zag shards: every position on exactly one rank, in increasing
 *     order; under causal attention the ranks' query-key pairs are equal
 *     within one chunk's rows;
 *  3. the ranks agree on errors: a NULL on one rank, settings that differ,
 *     sizes that differ, all give every rank the same status and message;
 *  4. attn_mpi_allreduce_mean against a float64 mean.
 *
 * A check's verdict is reduced over the ranks (MPI_MAX of the error) before
 * any assert, so a failure on one rank fails every rank instead of leaving
 * the others waiting in the next collective call.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attn_mpi.h"
#include "mpi_test_util.h"
#include "test_util.h"

#define TOL 1e-5

static int rank, nranks;
static double worst_fwd_single, worst_fwd_ref, worst_bwd_single, worst_bwd_ref;

typedef struct ring_case {
    int64_t batch, heads_q, heads_kv, seq_len, dim_qk, dim_v;
    int causal, layout;
} ring_case;

/* A whole problem, as every rank makes it. */
typedef struct whole {
    ring_case c;
    float *q, *k, *v, *d_out;
    float *out, *lse, *d_q, *d_k, *d_v;       /* one process's libattn */
    double *r_out, *r_lse, *r_dq, *r_dk, *r_dv; /* float64 */
    double *m_dq, *m_dk, *m_dv;               /* the gradients' magnitudes */
} whole;

static int64_t n_of(const ring_case *c, int64_t heads, int64_t len, int64_t dim)
{
    return c->batch * heads * len * dim;
}

static void whole_make(whole *w, const ring_case *c, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->c = *c;
    const int64_t L = c->seq_len;
    const int64_t nq = n_of(c, c->heads_q, L, c->dim_qk), nk = n_of(c, c->heads_kv, L, c->dim_qk);
    const int64_t nv = n_of(c, c->heads_kv, L, c->dim_v), no = n_of(c, c->heads_q, L, c->dim_v);
    const int64_t nl = c->batch * c->heads_q * L;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    w->q = floats(nq), w->k = floats(nk), w->v = floats(nv), w->d_out = floats(no);
    tu_fill_normal(&rng, w->q, (size_t)nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, w->k, (size_t)nk, 0.0f, 1.0f);
    tu_fill_uniform(&rng, w->v, (size_t)nv, -1.0f, 1.0f);
    tu_fill_uniform(&rng, w->d_out, (size_t)no, -1.0f, 1.0f);

    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&op, c->batch, c->heads_q, c->heads_kv, L, L, c->dim_qk,
                                      c->dim_v), ATTN_OK);
    assert_int_equal(attn_sdpa_set_layout(op, (attn_layout)c->layout), ATTN_OK);
    assert_int_equal(attn_sdpa_set_causal(op, c->causal ? ATTN_CAUSAL_TOP_LEFT
                                                        : ATTN_CAUSAL_NONE), ATTN_OK);
    w->out = floats(no), w->lse = floats(nl);
    w->d_q = floats(nq), w->d_k = floats(nk), w->d_v = floats(nv);
    assert_int_equal(attn_sdpa_forward(ctx, op, w->q, w->k, w->v, NULL, w->out, NULL, w->lse),
                     ATTN_OK);
    assert_int_equal(attn_sdpa_backward(ctx, op, w->q, w->k, w->v, NULL, w->out, w->lse,
                                        w->d_out, w->d_q, w->d_k, w->d_v), ATTN_OK);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);

    ref_shape rs = {c->batch, c->heads_q, c->heads_kv, L, L, c->dim_qk, c->dim_v, c->layout,
                    c->causal ? REF_CAUSAL_TOP_LEFT : REF_CAUSAL_NONE,
                    (double)(float)(1.0 / sqrt((double)c->dim_qk)), NULL};
    w->r_out = doubles(no), w->r_lse = doubles(nl);
    w->r_dq = doubles(nq), w->r_dk = doubles(nk), w->r_dv = doubles(nv);
    w->m_dq = doubles(nq), w->m_dk = doubles(nk), w->m_dv = doubles(nv);
    assert_int_equal(ref_sdpa(&rs, w->q, w->k, w->v, NULL, w->r_out, NULL, w->r_lse), 0);
    assert_int_equal(ref_sdpa_backward(&rs, w->q, w->k, w->v, NULL, w->d_out, 0, w->r_dq,
                                       w->r_dk, w->r_dv), 0);
    assert_int_equal(ref_sdpa_backward(&rs, w->q, w->k, w->v, NULL, w->d_out, 1, w->m_dq,
                                       w->m_dk, w->m_dv), 0);
}

static void whole_free(whole *w)
{
    void *all[] = {w->q, w->k, w->v, w->d_out, w->out, w->lse, w->d_q, w->d_k, w->d_v,
                   w->r_out, w->r_lse, w->r_dq, w->r_dk, w->r_dv, w->m_dq, w->m_dk, w->m_dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Element (b, h, i) of a tensor of `len` rows in `layout`: REF_BHSD or
 * REF_BSHD, or LSE for lse's [B, H, L] (rows of one value, BHSD order). */
enum { LSE = -1 };

static int64_t at(int layout, int64_t heads, int64_t len, int64_t dim, int64_t b, int64_t h,
                  int64_t i)
{
    return ref_index(layout == LSE ? REF_BHSD : layout, heads, len, dim, b, h, i, 0);
}

/* The rows `pos` of a whole tensor of elements of `size` bytes (float or
 * double) into a local one of n rows, in the same layout. */
static void gather(const ring_case *c, int layout, int64_t heads, int64_t dim, size_t size,
                   const void *src, const int64_t *pos, int64_t n, void *dst)
{
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < n; i++)
                memcpy((char *)dst + (size_t)at(layout, heads, n, dim, b, h, i) * size,
                       (const char *)src +
                           (size_t)at(layout, heads, c->seq_len, dim, b, h, pos[i]) * size,
                       (size_t)dim * size);
}

static void gather_f(const ring_case *c, int layout, int64_t heads, int64_t dim,
                     const float *src, const int64_t *pos, int64_t n, float *dst)
{
    gather(c, layout, heads, dim, sizeof(float), src, pos, n, dst);
}

/* The largest error of a local tensor against the rows `pos` of a whole
 * reference in double: tu_max_err_lse for lse (layout LSE), tu_max_err_scaled
 * against the magnitudes mag of the gradients' terms when mag is not NULL (a
 * gradient that cancels to near 0 carries the rounding of its terms), else
 * tu_max_err. */
static double err_against(const ring_case *c, int layout, int64_t heads, int64_t dim,
                          const float *local, const double *ref, const double *mag,
                          const int64_t *pos, int64_t n)
{
    int64_t count = c->batch * heads * n * dim;
    double *want = doubles(count), *scale = mag ? doubles(count) : NULL;
    gather(c, layout, heads, dim, sizeof(double), ref, pos, n, want);
    if (mag)
        gather(c, layout, heads, dim, sizeof(double), mag, pos, n, scale);
    double e = layout == LSE ? tu_max_err_lse(local, want, count, NULL)
             : mag           ? tu_max_err_scaled(local, want, scale, count, dim, NULL)
                             : tu_max_err(local, want, count, dim, NULL);
    free(want);
    free(scale);
    return e;
}

/* The same against one process's float result. */
static double err_vs_single(const ring_case *c, int layout, int64_t heads, int64_t dim,
                            const float *local, const float *whole_t, const double *mag,
                            const int64_t *pos, int64_t n)
{
    int64_t total = c->batch * heads * c->seq_len * dim;
    double *whole_d = doubles(total);
    for (int64_t i = 0; i < total; i++)
        whole_d[i] = whole_t[i];
    double e = err_against(c, layout, heads, dim, local, whole_d, mag, pos, n);
    free(whole_d);
    return e;
}

/* One case: the ring on this rank's rows against the whole problem. */
static void check_case(const ring_case *c, uint64_t seed)
{
    whole w;
    whole_make(&w, c, seed);
    attn_mpi_ring *ring = NULL;
    assert_int_equal(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, c->batch, c->heads_q,
                                          c->heads_kv, c->seq_len, c->dim_qk, c->dim_v),
                     ATTN_OK);
    assert_int_equal(attn_mpi_ring_set_layout(ring, (attn_layout)c->layout), ATTN_OK);
    assert_int_equal(attn_mpi_ring_set_causal(ring, c->causal ? ATTN_CAUSAL_BOTTOM_RIGHT
                                                              : ATTN_CAUSAL_NONE), ATTN_OK);
    int64_t n = -1;
    assert_int_equal(attn_mpi_ring_local_len(ring, &n), ATTN_OK);
    int64_t *pos = malloc((size_t)(n > 0 ? n : 1) * sizeof *pos);
    assert_int_equal(attn_mpi_ring_positions(ring, pos), ATTN_OK);

    const int lay = c->layout;
    const int64_t hq = c->heads_q, hk = c->heads_kv, dqk = c->dim_qk, dv = c->dim_v;
    float *q = floats(n_of(c, hq, n, dqk)), *k = floats(n_of(c, hk, n, dqk));
    float *v = floats(n_of(c, hk, n, dv)), *d_out = floats(n_of(c, hq, n, dv));
    gather_f(c, lay, hq, dqk, w.q, pos, n, q);
    gather_f(c, lay, hk, dqk, w.k, pos, n, k);
    gather_f(c, lay, hk, dv, w.v, pos, n, v);
    gather_f(c, lay, hq, dv, w.d_out, pos, n, d_out);
    float *out = floats(n_of(c, hq, n, dv)), *lse = floats(c->batch * hq * n);
    float *d_q = floats(n_of(c, hq, n, dqk)), *d_k = floats(n_of(c, hk, n, dqk));
    float *d_v = floats(n_of(c, hk, n, dv));
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    attn_status st = attn_mpi_ring_forward(ctx, ring, q, k, v, out, lse);
    if (st != ATTN_OK)
        fail_msg("forward: %s: %s", attn_status_string(st), attn_last_error());
    st = attn_mpi_ring_backward(ctx, ring, q, k, v, out, lse, d_out, d_q, d_k, d_v);
    if (st != ATTN_OK)
        fail_msg("backward: %s: %s", attn_status_string(st), attn_last_error());

    double fs = fmax(err_vs_single(c, lay, hq, dv, out, w.out, NULL, pos, n),
                     err_vs_single(c, LSE, hq, 1, lse, w.lse, NULL, pos, n));
    double bs = fmax(fmax(err_vs_single(c, lay, hq, dqk, d_q, w.d_q, w.m_dq, pos, n),
                          err_vs_single(c, lay, hk, dqk, d_k, w.d_k, w.m_dk, pos, n)),
                     err_vs_single(c, lay, hk, dv, d_v, w.d_v, w.m_dv, pos, n));
    double fr = fmax(err_against(c, lay, hq, dv, out, w.r_out, NULL, pos, n),
                     err_against(c, LSE, hq, 1, lse, w.r_lse, NULL, pos, n));
    double br = fmax(fmax(err_against(c, lay, hq, dqk, d_q, w.r_dq, w.m_dq, pos, n),
                          err_against(c, lay, hk, dqk, d_k, w.r_dk, w.m_dk, pos, n)),
                     err_against(c, lay, hk, dv, d_v, w.r_dv, w.m_dv, pos, n));
    fs = max_over_ranks(fs), bs = max_over_ranks(bs);
    fr = max_over_ranks(fr), br = max_over_ranks(br);
    worst_fwd_single = fmax(worst_fwd_single, fs), worst_bwd_single = fmax(worst_bwd_single, bs);
    worst_fwd_ref = fmax(worst_fwd_ref, fr), worst_bwd_ref = fmax(worst_bwd_ref, br);
    if (!(fs <= TOL && bs <= TOL && fr <= TOL && br <= TOL))
        fail_msg("B=%lld Hq=%lld Hkv=%lld L=%lld Dqk=%lld Dv=%lld causal=%d layout=%d on %d "
                 "ranks: forward %.3g (one process) %.3g (float64), backward %.3g %.3g",
                 (long long)c->batch, (long long)hq, (long long)hk, (long long)c->seq_len,
                 (long long)dqk, (long long)dv, c->causal, lay, nranks, fs, fr, bs, br);

    /* The outputs a caller leaves NULL are computed all the same: the others
     * are the same bits. */
    float *again = floats(n_of(c, hq, n, dqk > dv ? dqk : dv) + n_of(c, hk, n, dqk + dv));
    int differ = 0;
    st = attn_mpi_ring_forward(ctx, ring, q, k, v, again, NULL);
    differ |= st != ATTN_OK || memcmp(again, out, (size_t)n_of(c, hq, n, dv) * 4) != 0;
    float *again_k = again + n_of(c, hq, n, dqk > dv ? dqk : dv), *again_v = again_k +
                                                                   n_of(c, hk, n, dqk);
    st = attn_mpi_ring_backward(ctx, ring, q, k, v, out, lse, d_out, NULL, again_k, again_v);
    differ |= st != ATTN_OK || memcmp(again_k, d_k, (size_t)n_of(c, hk, n, dqk) * 4) != 0 ||
              memcmp(again_v, d_v, (size_t)n_of(c, hk, n, dv) * 4) != 0;
    st = attn_mpi_ring_backward(ctx, ring, q, k, v, out, lse, d_out, again, NULL, NULL);
    differ |= st != ATTN_OK || memcmp(again, d_q, (size_t)n_of(c, hq, n, dqk) * 4) != 0;
    if (max_over_ranks(differ) != 0)
        fail_msg("L=%lld: with lse or gradients NULL the other outputs differ",
                 (long long)c->seq_len);
    free(again);

    attn_context_destroy(ctx);
    attn_mpi_ring_destroy(ring);
    void *all[] = {pos, q, k, v, d_out, out, lse, d_q, d_k, d_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    whole_free(&w);
}

static void test_ring_equals_one_process(void **state)
{
    (void)state;
    /* seq_len: divisible by 2 × ranks for 2 and 3 ranks (12, 48), not (37,
     * 61), shorter than 2 × ranks (3; 2 and 1, where ranks hold nothing, causal
     * and not), none. */
    const ring_case cases[] = {
        {2, 4, 4, 48, 16, 16, 0, ATTN_LAYOUT_BHSD},
        {2, 4, 4, 48, 16, 16, 1, ATTN_LAYOUT_BHSD},
        {1, 4, 2, 37, 8, 12, 1, ATTN_LAYOUT_BHSD},   /* GQA, Dqk != Dv */
        {2, 4, 2, 61, 16, 8, 0, ATTN_LAYOUT_BSHD},   /* GQA, BSHD */
        {1, 6, 3, 61, 8, 8, 1, ATTN_LAYOUT_BSHD},
        {2, 2, 1, 12, 8, 8, 1, ATTN_LAYOUT_BHSD},    /* MQA */
        {1, 2, 1, 3, 4, 4, 1, ATTN_LAYOUT_BHSD},
        {2, 2, 2, 2, 4, 4, 1, ATTN_LAYOUT_BSHD},     /* rank 2 of 3 holds nothing */
        {1, 2, 1, 1, 4, 4, 1, ATTN_LAYOUT_BHSD},     /* only rank 0 holds a position */
        {1, 2, 2, 1, 4, 4, 0, ATTN_LAYOUT_BSHD},
        {2, 4, 2, 7, 4, 6, 0, ATTN_LAYOUT_BSHD},
        {2, 2, 2, 0, 4, 4, 1, ATTN_LAYOUT_BHSD},     /* no position at all */
        {1, 8, 2, 300, 32, 32, 1, ATTN_LAYOUT_BHSD}, /* several blocks of query rows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], 1000 + i);
    if (rank == 0)
        printf("mpi: %d ranks: ring vs one process: forward %.3g, backward %.3g; vs float64: "
               "forward %.3g, backward %.3g (bound %g)\n", nranks, worst_fwd_single,
               worst_bwd_single, worst_fwd_ref, worst_bwd_ref, TOL);
}

/* ---- 2. the zig-zag shards ------------------------------------------------- */

static void test_shards(void **state)
{
    (void)state;
    for (int64_t L = 0; L <= 50; L += 7) {
        attn_mpi_ring *ring = NULL;
        assert_int_equal(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, 1, 1, L, 4, 4),
                         ATTN_OK);
        int64_t n = 0;
        assert_int_equal(attn_mpi_ring_local_len(ring, &n), ATTN_OK);
        int64_t *pos = malloc((size_t)(n + 1) * sizeof *pos);
        assert_int_equal(attn_mpi_ring_positions(ring, pos), ATTN_OK);
        int *seen = calloc((size_t)L + 1, sizeof *seen), *all = calloc((size_t)L + 1, sizeof *all);
        int64_t pairs = 0;  /* the causal query-key pairs of this rank's queries */
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            bad |= pos[i] < 0 || pos[i] >= L || (i > 0 && pos[i] <= pos[i - 1]);
            if (!bad)
                seen[pos[i]]++;
            pairs += pos[i] + 1;
        }
        assert_int_equal(max_over_ranks(bad), 0);
        MPI_Allreduce(seen, all, (int)L + 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        for (int64_t p = 0; p < L; p++)
            assert_int_equal(all[p], 1);
        /* Balance: equal when 2 × ranks divides L; otherwise the ranks'
         * causal pairs (about L² / (2 × ranks) each) differ by less than
         * 2L, a position's keys per chunk (attn_mpi.h). */
        double most = max_over_ranks((double)pairs), least = -max_over_ranks(-(double)pairs);
        if (L % (2 * nranks) == 0 ? most != least : most - least >= 2.0 * (double)L)
            fail_msg("L=%lld: causal pairs from %.0f to %.0f", (long long)L, least, most);
        free(pos);
        free(seen);
        free(all);
        attn_mpi_ring_destroy(ring);
    }
}

/* ---- 3. the ranks agree on errors ------------------------------------------ */

/* Every rank got want, and the same message. */
static void test_errors_agree(void **state)
{
    (void)state;
    const int last = nranks - 1;
    attn_mpi_ring *ring = NULL;
    /* Sizes that differ between ranks, and a bad size on one rank. */
    expect_everywhere(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, 2, 2, 10 + rank, 4, 4),
                      nranks > 1 ? ATTN_ERR_SHAPE_MISMATCH : ATTN_OK,
                      nranks > 1 ? "different seq_len" : "");
    attn_mpi_ring_destroy(ring);
    ring = NULL;
    char want[128];
    snprintf(want, sizeof want, "attn_mpi_ring_create: rank %d: heads_q (3)", last);
    expect_everywhere(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, rank == last ? 3 : 2, 2,
                                           10, 4, 4), ATTN_ERR_SHAPE_MISMATCH, want);
    assert_null(ring);
    assert_int_equal(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, 2, 2, 10, 4, 4), ATTN_OK);

    int64_t n = 0;
    assert_int_equal(attn_mpi_ring_local_len(ring, &n), ATTN_OK);
    float *q = floats(2 * n * 4), *out = floats(2 * n * 4), *lse = floats(2 * n);
    tu_fill_uniform(&(tu_rng){7}, q, (size_t)(2 * n * 4), -1.0f, 1.0f);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    /* A NULL on the last rank: every rank fails, nothing is written. */
    snprintf(want, sizeof want, "attn_mpi_ring_forward: rank %d: v is NULL", last);
    expect_everywhere(attn_mpi_ring_forward(ctx, ring, q, q, rank == last ? NULL : q, out, lse),
                      ATTN_ERR_NULL_POINTER, want);
    assert_int_equal(tu_count_nonfinite(out, 2 * n * 4), 2 * n * 4);
    snprintf(want, sizeof want, "attn_mpi_ring_backward: rank %d: lse is NULL", last);
    expect_everywhere(attn_mpi_ring_backward(ctx, ring, q, q, q, out, rank == last ? NULL : lse,
                                             out, NULL, NULL, NULL),
                      ATTN_ERR_NULL_POINTER, want);
    /* Settings that differ between ranks. */
    if (nranks > 1) {
        assert_int_equal(attn_mpi_ring_set_causal(ring, rank == last ? ATTN_CAUSAL_TOP_LEFT
                                                                     : ATTN_CAUSAL_NONE),
                         ATTN_OK);
        expect_everywhere(attn_mpi_ring_forward(ctx, ring, q, q, q, out, lse), ATTN_ERR_STATE,
                          "different causal settings");
        assert_int_equal(attn_mpi_ring_set_causal(ring, ATTN_CAUSAL_NONE), ATTN_OK);
        assert_int_equal(attn_mpi_ring_set_scale(ring, rank == last ? 0.25f : 0.5f), ATTN_OK);
        expect_everywhere(attn_mpi_ring_forward(ctx, ring, q, q, q, out, lse), ATTN_ERR_STATE,
                          "different scales");
        assert_int_equal(attn_mpi_ring_set_scale(ring, 0.5f), ATTN_OK);
    }
    expect_everywhere(attn_mpi_ring_forward(ctx, ring, q, q, q, out, lse), ATTN_OK, "");
    /* Ranks in different calls: the last in the backward, the others in the
     * forward. */
    if (nranks > 1)
        expect_everywhere(rank == last
                              ? attn_mpi_ring_backward(ctx, ring, q, q, q, out, lse, out, NULL,
                                                       NULL, NULL)
                              : attn_mpi_ring_forward(ctx, ring, q, q, q, out, lse),
                          ATTN_ERR_STATE, "different calls");
    /* Local calls: checked alone. */
    assert_int_equal(attn_mpi_ring_set_layout(ring, (attn_layout)2), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mpi_ring_set_causal(ring, (attn_causal)3), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mpi_ring_set_scale(ring, NAN), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_mpi_ring_local_len(ring, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mpi_ring_local_len(NULL, &n), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mpi_ring_positions(ring, NULL),
                     n > 0 ? ATTN_ERR_NULL_POINTER : ATTN_OK);
    assert_int_equal(attn_mpi_ring_forward(ctx, NULL, q, q, q, out, lse), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_mpi_ring_create(&ring, MPI_COMM_NULL, 1, 1, 1, 1, 1, 1),
                     ATTN_ERR_INVALID_ARGUMENT);
    attn_mpi_ring_destroy(NULL);
    attn_context_destroy(ctx);
    attn_mpi_ring_destroy(ring);
    free(q);
    free(out);
    free(lse);
}

/* ---- 4. data parallelism's mean -------------------------------------------- */

static void test_allreduce_mean(void **state)
{
    (void)state;
    const int64_t count = 1000;
    float *x = floats(count);
    for (int64_t i = 0; i < count; i++)
        x[i] = (float)sin(0.37 * (double)i + 1.3 * rank) * (float)(1 + rank);
    assert_int_equal(attn_mpi_allreduce_mean(MPI_COMM_WORLD, x, count), ATTN_OK);
    double worst = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double sum = 0.0;
        for (int r = 0; r < nranks; r++)
            sum += (double)(float)sin(0.37 * (double)i + 1.3 * r) * (float)(1 + r);
        double want = sum / nranks;
        worst = fmax(worst, fabs(x[i] - want) / (fabs(want) + 1.0));
    }
    assert_true(max_over_ranks(worst) <= 1e-6);
    /* Every rank holds the same values afterwards: bit for bit. */
    float *first = floats(count);
    memcpy(first, x, (size_t)count * sizeof *x);
    MPI_Bcast(first, (int)count, MPI_FLOAT, 0, MPI_COMM_WORLD);
    assert_int_equal(max_over_ranks(memcmp(first, x, (size_t)count * sizeof *x) != 0), 0);
    expect_everywhere(attn_mpi_allreduce_mean(MPI_COMM_WORLD, x, rank == 0 ? count : count - 1),
                      nranks > 1 ? ATTN_ERR_SHAPE_MISMATCH : ATTN_OK,
                      nranks > 1 ? "different counts" : "");
    expect_everywhere(attn_mpi_allreduce_mean(MPI_COMM_WORLD, rank == 0 ? NULL : x, count),
                      ATTN_ERR_NULL_POINTER, "attn_mpi_allreduce_mean: rank 0: values is NULL");
    expect_everywhere(attn_mpi_allreduce_mean(MPI_COMM_WORLD, x, -1),
                      ATTN_ERR_INVALID_ARGUMENT, "count (-1) is negative");
    assert_int_equal(attn_mpi_allreduce_mean(MPI_COMM_WORLD, NULL, 0), ATTN_OK);
    free(x);
    free(first);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    /* A failed assert must fail the run: MPI_Abort from CMocka's exit is
     * not needed, every check is reduced over the ranks first. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_equals_one_process),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_errors_agree),
        cmocka_unit_test(test_allreduce_mean),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
