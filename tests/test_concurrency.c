/*
 * test_concurrency.c — the thread-safety contract of attn.h, exercised: one
 * attn_sdpa, one attn_mha and one attn_additive (and one attn_mask for each)
 * are shared by 8 threads, each with its own attn_context, released at once
 * by a barrier. Each thread runs 200 iterations of SDPA, MHA and additive
 * forward calls, every iteration on different inputs, and checks every
 * result (out, weights and lse) bitwise against the result the main thread
 * computed for the same inputs before, alone, on a 1-thread context.
 * Half of the threads use 2-thread contexts, so the contexts' worker pools
 * run concurrently too. Each thread also checks that attn_last_error() is
 * its own: a failure of another thread never changes it.
 *
 * Built once with ThreadSanitizer by .ci/reliability.sh (build-tsan), where
 * any data race in libattn is a report and a failure; in the other builds it
 * checks the results. Results are compared through 64-bit FNV-1a digests of
 * their bytes, so the single-threaded results take no memory to keep.
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "reliability_util.h"

enum { THREADS = 8, MAX_ITERS = 200, OPS = 3 };
/* 200 iterations per thread; ATTN_TEST_QUICK=1 (set by .ci/reliability.sh
 * for the Valgrind run only, where threads are serialized and every call
 * ~50x slower) makes it 20. The ThreadSanitizer run uses the full 200. */
static int ITERS = MAX_ITERS;
enum { OP_SDPA, OP_MHA, OP_ADD };

/* SDPA [B, H, L, D] with GQA and two blocks of query rows */
enum { B = 2, HQ = 4, HKV = 2, LQ = 66, LKV = 24, D = 16, DV = 8 };
/* MHA */
enum { E = 32, NH = 4, NKV = 2, KD = 24, VD = 12, MLQ = 20, MLKV = 18 };
/* additive */
enum { AQ = 10, AK = 6, AH = 16, ADV = 5, ALQ = 70, ALKV = 15 };

enum {
    N_Q = B * HQ * LQ * D, N_K = B * HKV * LKV * D, N_V = B * HKV * LKV * DV,
    N_O = B * HQ * LQ * DV, N_W = B * HQ * LQ * LKV, N_L = B * HQ * LQ,
    M_Q = B * MLQ * E, M_K = B * MLKV * KD, M_V = B * MLKV * VD, M_O = B * MLQ * E,
    M_W = B * NH * MLQ * MLKV,
    A_Q = B * ALQ * AQ, A_K = B * ALKV * AK, A_V = B * ALKV * ADV, A_O = B * ALQ * ADV,
    A_W = B * ALQ * ALKV,
};

/* The shared, read-only objects. */
static attn_sdpa *g_sdpa;
static attn_mha *g_mha;
static attn_additive *g_add;
static attn_mask *g_mask, *g_mha_mask, *g_add_mask;
static const int64_t g_len[B] = {LKV, 17}, g_mha_len[B] = {MLKV, 11}, g_add_len[B] = {9, ALKV};
static uint8_t g_keep[LQ * LKV];
static float g_bias[HQ * LKV], g_add_bias[ALQ * ALKV];

/* digests[op][input]: the single-threaded results */
static uint64_t g_digest[OPS][THREADS * MAX_ITERS];

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211u;
    return h;
}

/* Scratch of one thread: inputs and outputs of every op. */
typedef struct work {
    float q[N_Q], k[N_K], v[N_V], o[N_O], w[N_W], l[N_L];
    float mq[M_Q], mk[M_K], mv[M_V], mo[M_O], mw[M_W];
    float aq[A_Q], ak[A_K], av[A_V], ao[A_O], aw[A_W];
} work;

/* Input `index` of op: a distinct seed for each. */
static void make_input(work *wk, int op, int index)
{
    tu_rng r;
    tu_rng_seed(&r, 0xC0C0A ^ ((uint64_t)op << 32) ^ (uint64_t)index);
    switch (op) {
    case OP_SDPA:
        tu_fill_normal(&r, wk->q, N_Q, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->k, N_K, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->v, N_V, 0.0f, 1.0f);
        break;
    case OP_MHA:
        tu_fill_normal(&r, wk->mq, M_Q, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->mk, M_K, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->mv, M_V, 0.0f, 1.0f);
        break;
    default:
        tu_fill_normal(&r, wk->aq, A_Q, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->ak, A_K, 0.0f, 1.0f);
        tu_fill_normal(&r, wk->av, A_V, 0.0f, 1.0f);
        break;
    }
}

/* Runs op on input `index` and returns the digest of its outputs, or 0 if
 * the call failed (a digest is never 0 in practice). */
static uint64_t run(attn_context *ctx, work *wk, int op, int index)
{
    make_input(wk, op, index);
    uint64_t h = 1469598103934665603u;
    attn_status st;
    switch (op) {
    case OP_SDPA:
        st = attn_sdpa_forward(ctx, g_sdpa, wk->q, wk->k, wk->v, g_mask, wk->o, wk->w, wk->l);
        h = fnv(fnv(fnv(h, wk->o, sizeof wk->o), wk->w, sizeof wk->w), wk->l, sizeof wk->l);
        break;
    case OP_MHA:
        st = attn_mha_forward(ctx, g_mha, B, MLQ, MLKV, wk->mq, wk->mk, wk->mv, g_mha_mask, wk->mo,
                              wk->mw);
        h = fnv(fnv(h, wk->mo, sizeof wk->mo), wk->mw, sizeof wk->mw);
        break;
    default:
        st = attn_additive_forward(ctx, g_add, B, ALQ, ALKV, ADV, wk->aq, wk->ak, wk->av,
                                   g_add_mask, wk->ao, wk->aw);
        h = fnv(fnv(h, wk->ao, sizeof wk->ao), wk->aw, sizeof wk->aw);
        break;
    }
    return st == ATTN_OK ? h : 0;
}

static pthread_barrier_t g_start;

typedef struct thread_result {
    int index;
    int mismatches, failures;
    int own_error_kept;
    long long checked;
} thread_result;

static void *thread_main(void *arg)
{
    thread_result *res = arg;
    int t = res->index;
    work *wk = ru_alloc(sizeof *wk);
    attn_context *ctx = NULL;
    if (attn_context_create(&ctx) != ATTN_OK ||
        attn_context_set_num_threads(ctx, 1 + t % 2) != ATTN_OK) {
        res->failures++;
        pthread_barrier_wait(&g_start);
        free(wk);
        return NULL;
    }
    /* A failure of this thread only: its message must survive the others'. */
    char mine[64];
    attn_context_set_num_threads(ctx, -(t + 1));
    snprintf(mine, sizeof mine, "%s", attn_last_error());
    pthread_barrier_wait(&g_start);
    for (int it = 0; it < ITERS; it++) {
        int index = t * ITERS + it;
        for (int op = 0; op < OPS; op++) {
            /* rotate the order so that different ops overlap */
            int o = (op + t + it) % OPS;
            uint64_t h = run(ctx, wk, o, index);
            res->checked++;
            if (h == 0)
                res->failures++;
            else if (h != g_digest[o][index])
                res->mismatches++;
        }
        if (it % 50 == 25) /* more failures, to race the others' messages */
            attn_context_set_num_threads(ctx, -(t + 1));
    }
    res->own_error_kept = strcmp(mine, attn_last_error()) == 0 && strstr(mine, "n (-") != NULL;
    attn_context_destroy(ctx);
    free(wk);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    const char *quick = getenv("ATTN_TEST_QUICK");
    if (quick && *quick && *quick != '0') {
        ITERS = 20;
        print_message("concurrency: quick mode (ATTN_TEST_QUICK): %d iterations\n", ITERS);
    }
    tu_rng r;
    tu_rng_seed(&r, 606);
    for (int x = 0; x < LQ * LKV; x++)
        g_keep[x] = tu_uniform(&r) < 0.85;
    tu_fill_normal(&r, g_bias, HQ * LKV, 0.0f, 1.0f);
    tu_fill_normal(&r, g_add_bias, ALQ * ALKV, 0.0f, 1.0f);
    g_add_bias[3] = -INFINITY;
    if (attn_mask_create(&g_mask) || attn_mask_set_kv_lengths(g_mask, g_len, B, 0, 0) ||
        attn_mask_set_bool(g_mask, g_keep, 1, 1, LQ, LKV) ||
        attn_mask_set_bias(g_mask, g_bias, 1, HQ, 1, LKV))
        return -1;
    if (attn_mask_create(&g_mha_mask) || attn_mask_set_kv_lengths(g_mha_mask, g_mha_len, B, 0, 0))
        return -1;
    if (attn_mask_create(&g_add_mask) || attn_mask_set_kv_lengths(g_add_mask, g_add_len, B, 0, 0) ||
        attn_mask_set_bias(g_add_mask, g_add_bias, 1, 1, ALQ, ALKV))
        return -1;
    if (attn_sdpa_create(&g_sdpa, B, HQ, HKV, LQ, LKV, D, DV) ||
        attn_sdpa_set_layout(g_sdpa, ATTN_LAYOUT_BSHD) ||
        attn_sdpa_set_causal(g_sdpa, ATTN_CAUSAL_BOTTOM_RIGHT))
        return -1;
    int64_t kvd = E / NH * NKV;
    const int64_t wsz[4] = {E * E, kvd * KD, kvd * VD, E * E}, bsz[4] = {E, kvd, kvd, E};
    if (attn_mha_create(&g_mha, E, NH, NKV, KD, VD, 1) ||
        attn_mha_set_causal(g_mha, ATTN_CAUSAL_TOP_LEFT))
        return -1;
    for (int p = 0; p < 4; p++) {
        float *w = ru_floats(wsz[p]), *b = ru_floats(bsz[p]);
        tu_fill_uniform(&r, w, (size_t)wsz[p], -0.3f, 0.3f);
        tu_fill_uniform(&r, b, (size_t)bsz[p], -0.3f, 0.3f);
        attn_status st = attn_mha_set_weights(g_mha, (attn_proj)p, w, b);
        free(w), free(b);
        if (st != ATTN_OK)
            return -1;
    }
    float wq[AH * AQ], wk[AH * AK], wv[AH];
    tu_fill_normal(&r, wq, AH * AQ, 0.0f, 0.5f);
    tu_fill_normal(&r, wk, AH * AK, 0.0f, 0.5f);
    tu_fill_normal(&r, wv, AH, 0.0f, 0.5f);
    if (attn_additive_create(&g_add, AQ, AK, AH) || attn_additive_set_weights(g_add, wq, wk, wv))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    attn_sdpa_destroy(g_sdpa);
    attn_mha_destroy(g_mha);
    attn_additive_destroy(g_add);
    attn_mask_destroy(g_mask), attn_mask_destroy(g_mha_mask), attn_mask_destroy(g_add_mask);
    return 0;
}

/* The single-threaded results agree with the float64 reference (one input
 * of SDPA), so the threads are compared with something right. */
static void check_first_against_reference(work *wk)
{
    ref_shape s = {B, HQ, HKV, LQ, LKV, D, DV, REF_BSHD, REF_CAUSAL_BOTTOM_RIGHT,
                   (double)(float)(1.0 / sqrt((double)D)), NULL};
    ref_mask m = {.lengths = g_len, .keep = g_keep, .keep_b = 1, .keep_h = 1, .keep_q = LQ,
                  .bias = g_bias, .bias_b = 1, .bias_h = HQ, .bias_q = 1};
    double *o = ru_doubles(N_O), *w = ru_doubles(N_W), *l = ru_doubles(N_L);
    make_input(wk, OP_SDPA, 0);
    assert_int_equal(ref_sdpa(&s, wk->q, wk->k, wk->v, &m, o, w, l), 0);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, 1), ATTN_OK);
    assert_true(run(ctx, wk, OP_SDPA, 0) == g_digest[OP_SDPA][0]);
    assert_true(ru_close("sdpa: out", wk->o, o, N_O, DV, 1e-5));
    assert_true(ru_close("sdpa: weights", wk->w, w, N_W, LKV, 1e-5));
    assert_true(ru_close("sdpa: lse", wk->l, l, N_L, 0, 1e-5));
    attn_context_destroy(ctx);
    free(o), free(w), free(l);
}

static void test_shared_ops_across_8_threads(void **state)
{
    (void)state;
    work *wk = ru_alloc(sizeof *wk);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, 1), ATTN_OK);
    for (int op = 0; op < OPS; op++)
        for (int x = 0; x < THREADS * ITERS; x++) {
            g_digest[op][x] = run(ctx, wk, op, x);
            assert_true(g_digest[op][x] != 0);
        }
    attn_context_destroy(ctx);
    check_first_against_reference(wk);
    free(wk);

    pthread_t th[THREADS];
    thread_result res[THREADS];
    assert_int_equal(pthread_barrier_init(&g_start, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++) {
        res[t] = (thread_result){.index = t};
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, &res[t]), 0);
    }
    long long checked = 0;
    int bad = 0;
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        checked += res[t].checked;
        if (res[t].mismatches || res[t].failures || !res[t].own_error_kept) {
            print_error("thread %d: %d results differ from the single-threaded ones, %d calls "
                        "failed, own attn_last_error %s\n",
                        t, res[t].mismatches, res[t].failures,
                        res[t].own_error_kept ? "kept" : "LOST");
            bad = 1;
        }
    }
    pthread_barrier_destroy(&g_start);
    print_message("concurrency: %d threads x %d iterations x %d ops (SDPA, MHA, additive; shared "
                  "ops and masks): %lld results, all bitwise equal to the single-threaded ones\n",
                  THREADS, ITERS, OPS, checked);
    assert_false(bad);
    assert_int_equal(checked, (long long)THREADS * ITERS * OPS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_ops_across_8_threads),
    };
    return cmocka_run_group_tests_name("concurrency", tests, setup, teardown);
}
