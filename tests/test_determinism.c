/*
 * test_determinism.c — the same inputs and thread count give bitwise the
 * same outputs, run after run. For SDPA, MHA, additive attention and
 * Nadaraya–Watson, on 1, 2, 3 and 4 threads, every run must equal the first
 * bit for bit (out, weights and lse, NaN payloads included):
 *   - RUNS runs, each on a fresh context;
 *   - RUNS runs on one context reused (its scratch holds the last run's
 *     numbers);
 *   - RUNS runs on a context dirtied first by a larger call of another op
 *     (scratch and workspace full of other numbers, more threads started);
 *   - inputs and outputs copied to buffers at RUNS different addresses and
 *     alignments (4-byte steps), as in a program's successive runs;
 * and attn.h's stronger promise holds too: the results do not depend on the
 * thread count. Shapes span several blocks of query rows and of projection
 * rows, so that the work is really split and scheduled dynamically.
 *
 * The test prints "determinism digest: <hex>", a hash of every output;
 * .ci/reliability.sh runs the program twice and compares the two digests
 * (run after run across processes: other addresses, other heap layout).
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

enum { SHIFTS = 16 };
/* Runs per configuration and the largest thread count. ATTN_TEST_QUICK=1
 * (set by .ci/reliability.sh for the Valgrind run, which serializes threads
 * and runs ~50x slower) cuts them to 2 runs on 1-2 threads; every other
 * build runs the full set. */
static int RUNS = 6, MAX_THREADS = 4;
enum { OP_SDPA, OP_MHA, OP_ADD, OP_NW, OPS };
static const char *const op_name[OPS] = {"sdpa", "mha", "additive", "nadaraya-watson"};

enum { B = 2, HQ = 4, HKV = 2, LQ = 140, LKV = 100, D = 16, DV = 12 };
enum { E = 24, NH = 6, NKV = 3, KD = 20, VD = 10, MLQ = 300, MLKV = 90 };
enum { AQ = 12, AK = 9, AH = 16, ADV = 7, ALQ = 150, ALKV = 60 };
enum { NWQ = 333, NWK = 120 };

typedef struct io {
    int64_t n_in[3], n_out[3];
    float *in[3];    /* q, k, v (each op's three inputs) */
    float *out[3];   /* out, weights, lse (lse only for SDPA) */
} io;

static attn_sdpa *g_sdpa;
static attn_mha *g_mha;
static attn_additive *g_add;
static attn_mask *g_mask, *g_mha_mask;
static const int64_t g_len[B] = {LKV, 71}, g_mha_len[B] = {MLKV, 50};
static float g_bias[LQ * LKV];
static uint64_t g_digest = 1469598103934665603u;

static void io_shapes(int op, io *x)
{
    static const int64_t shapes[OPS][6] = {
        {B * HQ * LQ * D, B * HKV * LKV * D, B * HKV * LKV * DV, B * HQ * LQ * DV,
         B * HQ * LQ * LKV, B * HQ * LQ},
        {B * MLQ * E, B * MLKV * KD, B * MLKV * VD, B * MLQ * E, B * NH * MLQ * MLKV, 0},
        {B * ALQ * AQ, B * ALKV * AK, B * ALKV * ADV, B * ALQ * ADV, B * ALQ * ALKV, 0},
        {NWQ, NWK, NWK, NWQ, NWQ * NWK, 0},
    };
    for (int i = 0; i < 3; i++)
        x->n_in[i] = shapes[op][i], x->n_out[i] = shapes[op][3 + i];
}

/* Inputs of op at buffers shifted by `shift` floats (fresh allocations). */
static void io_make(int op, io *x, int shift)
{
    tu_rng r;
    tu_rng_seed(&r, 77 + (uint64_t)op);
    io_shapes(op, x);
    for (int i = 0; i < 3; i++) {
        x->in[i] = ru_floats(x->n_in[i] + shift) + shift;
        tu_fill_normal(&r, x->in[i], (size_t)x->n_in[i], 0.0f, op == OP_NW ? 2.0f : 1.0f);
        x->out[i] = ru_floats(x->n_out[i] + shift) + shift;
    }
}

static void io_free(io *x, int shift)
{
    for (int i = 0; i < 3; i++)
        free(x->in[i] - shift), free(x->out[i] - shift);
}

static attn_status run(attn_context *ctx, int op, io *x)
{
    switch (op) {
    case OP_SDPA:
        return attn_sdpa_forward(ctx, g_sdpa, x->in[0], x->in[1], x->in[2], g_mask, x->out[0],
                                 x->out[1], x->out[2]);
    case OP_MHA:
        return attn_mha_forward(ctx, g_mha, B, MLQ, MLKV, x->in[0], x->in[1], x->in[2],
                                g_mha_mask, x->out[0], x->out[1]);
    case OP_ADD:
        return attn_additive_forward(ctx, g_add, B, ALQ, ALKV, ADV, x->in[0], x->in[1], x->in[2],
                                     NULL, x->out[0], x->out[1]);
    default:
        return attn_nadaraya_watson(ctx, NWQ, NWK, x->in[0], x->in[1], x->in[2], 1.7f, x->out[0],
                                    x->out[1]);
    }
}

static attn_context *new_context(int threads)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    return ctx;
}

/* x's outputs bitwise equal to ref's? */
static void expect_same(const io *x, const io *ref, int op, int threads, const char *how, int run)
{
    for (int i = 0; i < 3; i++)
        if (x->n_out[i] && memcmp(x->out[i], ref->out[i], (size_t)x->n_out[i] * sizeof(float)))
            fail_msg("%s, %d threads, %s, run %d: output %d differs bitwise from the first run",
                     op_name[op], threads, how, run, i);
}

static int64_t compared;

static void check_op(int op)
{
    io first;
    io_make(op, &first, 0);
    attn_context *c1 = new_context(1);
    assert_int_equal(run(c1, op, &first), ATTN_OK);
    attn_context_destroy(c1);
    for (int i = 0; i < 3; i++)
        g_digest = g_digest * 31u + (uint64_t)first.n_out[i],
        g_digest ^= (uint64_t)tu_count_nonfinite(first.out[i], first.n_out[i]);
    for (int i = 0; i < 3; i++) {
        const unsigned char *c = (const unsigned char *)first.out[i];
        for (size_t b = 0; b < (size_t)first.n_out[i] * sizeof(float); b++)
            g_digest = (g_digest ^ c[b]) * 1099511628211u;
    }

    for (int threads = 1; threads <= MAX_THREADS; threads++) {
        /* fresh contexts */
        for (int r = 0; r < RUNS; r++) {
            io x;
            io_make(op, &x, 0);
            attn_context *ctx = new_context(threads);
            assert_int_equal(run(ctx, op, &x), ATTN_OK);
            expect_same(&x, &first, op, threads, "fresh context", r);
            attn_context_destroy(ctx);
            io_free(&x, 0);
            compared++;
        }
        /* one context reused, then one dirtied by a larger call of another op */
        for (int dirty = 0; dirty < 2; dirty++) {
            attn_context *ctx = new_context(threads);
            if (dirty) {
                io y;
                int other = (op + 1) % OPS;
                io_make(other, &y, 0);
                assert_int_equal(attn_context_set_num_threads(ctx, MAX_THREADS + 2), ATTN_OK);
                assert_int_equal(run(ctx, other, &y), ATTN_OK);
                assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
                io_free(&y, 0);
            }
            io x;
            io_make(op, &x, 0);
            for (int r = 0; r < RUNS; r++) {
                tu_fill_nan(x.out[0], (size_t)x.n_out[0]);
                assert_int_equal(run(ctx, op, &x), ATTN_OK);
                expect_same(&x, &first, op, threads, dirty ? "dirtied context" : "reused context",
                            r);
                compared++;
            }
            io_free(&x, 0);
            attn_context_destroy(ctx);
        }
        /* other addresses and alignments */
        for (int shift = 1; shift <= RUNS; shift++) {
            io x;
            io_make(op, &x, shift % SHIFTS);
            attn_context *ctx = new_context(threads);
            assert_int_equal(run(ctx, op, &x), ATTN_OK);
            expect_same(&x, &first, op, threads, "buffers at another address", shift);
            attn_context_destroy(ctx);
            io_free(&x, shift % SHIFTS);
            compared++;
        }
    }
    io_free(&first, 0);
}

static void test_sdpa(void **state) { (void)state; check_op(OP_SDPA); }
static void test_mha(void **state) { (void)state; check_op(OP_MHA); }
static void test_additive(void **state) { (void)state; check_op(OP_ADD); }
static void test_nadaraya_watson(void **state) { (void)state; check_op(OP_NW); }

static int setup(void **state)
{
    (void)state;
    const char *quick = getenv("ATTN_TEST_QUICK");
    if (quick && *quick && *quick != '0') {
        RUNS = 2, MAX_THREADS = 2;
        print_message("determinism: quick mode (ATTN_TEST_QUICK): %d runs, 1-%d threads\n",
                      RUNS, MAX_THREADS);
    }
    tu_rng r;
    tu_rng_seed(&r, 5150);
    tu_fill_normal(&r, g_bias, LQ * LKV, 0.0f, 1.0f);
    for (int x = 0; x < LQ * LKV; x += 7)
        g_bias[x] = -INFINITY;
    if (attn_mask_create(&g_mask) || attn_mask_set_kv_lengths(g_mask, g_len, B, 0, 0) ||
        attn_mask_set_bias(g_mask, g_bias, 1, 1, LQ, LKV) ||
        attn_mask_create(&g_mha_mask) || attn_mask_set_kv_lengths(g_mha_mask, g_mha_len, B, 0, 0))
        return -1;
    if (attn_sdpa_create(&g_sdpa, B, HQ, HKV, LQ, LKV, D, DV) ||
        attn_sdpa_set_causal(g_sdpa, ATTN_CAUSAL_BOTTOM_RIGHT))
        return -1;
    int64_t kvd = E / NH * NKV;
    const int64_t wsz[4] = {E * E, kvd * KD, kvd * VD, E * E}, bsz[4] = {E, kvd, kvd, E};
    if (attn_mha_create(&g_mha, E, NH, NKV, KD, VD, 1))
        return -1;
    for (int p = 0; p < 4; p++) {
        float *w = ru_floats(wsz[p]), *b = ru_floats(bsz[p]);
        tu_fill_uniform(&r, w, (size_t)wsz[p], -0.2f, 0.2f);
        tu_fill_uniform(&r, b, (size_t)bsz[p], -0.2f, 0.2f);
        attn_status st = attn_mha_set_weights(g_mha, (attn_proj)p, w, b);
        free(w), free(b);
        if (st != ATTN_OK)
            return -1;
    }
    float wq[AH * AQ], wk[AH * AK], wv[AH];
    tu_fill_normal(&r, wq, AH * AQ, 0.0f, 0.5f);
    tu_fill_normal(&r, wk, AH * AK, 0.0f, 0.5f);
    tu_fill_normal(&r, wv, AH, 0.0f, 0.5f);
    return attn_additive_create(&g_add, AQ, AK, AH) || attn_additive_set_weights(g_add, wq, wk, wv)
               ? -1
               : 0;
}

static int teardown(void **state)
{
    (void)state;
    attn_sdpa_destroy(g_sdpa);
    attn_mha_destroy(g_mha);
    attn_additive_destroy(g_add);
    attn_mask_destroy(g_mask), attn_mask_destroy(g_mha_mask);
    print_message("determinism: %lld runs (4 ops x 1-%d threads x fresh, reused, dirtied "
                  "contexts and shifted buffers), all bitwise equal to the first\n",
                  (long long)compared, MAX_THREADS);
    print_message("determinism digest: %016llx\n", (unsigned long long)g_digest);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdpa),
        cmocka_unit_test(test_mha),
        cmocka_unit_test(test_additive),
        cmocka_unit_test(test_nadaraya_watson),
    };
    return cmocka_run_group_tests_name("determinism", tests, setup, teardown);
}
