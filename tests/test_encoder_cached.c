/*
 * test_encoder_cached.c — attn_encoder_layer_forward_cached, the step of a
 * decoder-only stack with one KV cache per layer:
 *
 *  1. a stack of two causal layers (pre-norm GELU, then post-norm ReLU)
 *     decodes three sequences of different lengths in one ragged batch —
 *     a prompt each, then token by token, a sequence leaving the batch when
 *     it ends — and in chunks of 3 and 64 tokens, in place and not; every
 *     row equals one attn_encoder_layer_forward of the stack over each
 *     whole sequence (the bound: 2e-5 relative, normalised per
 *     row), with 1 and 2 threads;
 *  2. a layer whose self-attention has RoPE (through the internal handle,
 *     as a model with rotary positions would) gives the same equality;
 *  3. one sequence of 1,100 tokens decoded one at a time: the attention
 *     splits the cached keys into blocks and merges their partial results;
 *  4. every error: its status and message, with the cache's lengths and
 *     out unchanged.
 * The full forward itself is checked against PyTorch in
 * test_encoder_torch.c and against float64 in test_encoder.c; the float64
 * check here is that the cached rows agree with the library's float64-
 * validated forward.
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

#include "../src/attn_internal.h"
#include "test_util.h"

#define TOL 2e-5  /* cached against one full causal forward, the bound */

enum { D = 32, NHEAD = 4, FF = 48, LAYERS = 2, NSEQ = 3 };

static float *floats(int64_t n)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    assert_non_null(p);
    tu_fill_nan(p, (size_t)n);
    return p;
}

typedef struct stack {
    attn_encoder_layer *layer[LAYERS];
    float *params[LAYERS];
} stack;

static stack make_stack(uint64_t seed, attn_causal causal)
{
    stack s;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (int l = 0; l < LAYERS; l++) {
        assert_int_equal(attn_encoder_layer_create(&s.layer[l], D, NHEAD, FF,
                                                   l == 0 ? ATTN_ACTIVATION_GELU
                                                          : ATTN_ACTIVATION_RELU,
                                                   l == 0, 1e-5f),
                         ATTN_OK);
        int64_t count;
        assert_int_equal(attn_encoder_layer_param_count(s.layer[l], &count), ATTN_OK);
        s.params[l] = floats(count);
        tu_fill_normal(&rng, s.params[l], (size_t)count, 0.0f, 0.25f);
        assert_int_equal(attn_encoder_layer_set_params(s.layer[l], s.params[l]), ATTN_OK);
        assert_int_equal(attn_encoder_layer_set_causal(s.layer[l], causal), ATTN_OK);
    }
    return s;
}

static void free_stack(stack *s)
{
    for (int l = 0; l < LAYERS; l++) {
        attn_encoder_layer_destroy(s->layer[l]);
        free(s->params[l]);
    }
}

static attn_context *context(int threads)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    return ctx;
}

/* The stack over one whole sequence x [len, D]: out [len, D]. */
static void full_forward(attn_context *ctx, const stack *s, int64_t len, const float *x,
                         float *out)
{
    memcpy(out, x, (size_t)(len * D) * sizeof(float));
    for (int l = 0; l < LAYERS; l++)
        assert_int_equal(attn_encoder_layer_forward(ctx, s->layer[l], 1, len, out, NULL, out,
                                                    NULL),
                         ATTN_OK);
}

/* Decodes NSEQ sequences x[i] [lens[i], D] through the stack with one cache
 * per layer: first prompts[i] tokens of each in one call, then chunks of
 * `chunk` tokens of every sequence not yet ended, until all are. out[i]
 * gets each row's final output. in_place: each layer writes over its
 * input. */
static void decode(attn_context *ctx, const stack *s, const int64_t *lens,
                   const int64_t *prompts, int64_t chunk, int in_place, float *const *x,
                   float *const *out, int64_t page, int64_t pages)
{
    attn_kv_cache *cache[LAYERS];
    int64_t ids[LAYERS][NSEQ];
    for (int l = 0; l < LAYERS; l++) {
        assert_int_equal(attn_kv_cache_create(&cache[l], NHEAD, D / NHEAD, D / NHEAD, page,
                                              pages),
                         ATTN_OK);
        for (int i = 0; i < NSEQ; i++)
            assert_int_equal(attn_kv_cache_seq_open(cache[l], &ids[l][i]), ATTN_OK);
    }
    int64_t total = 0, done[NSEQ] = {0};
    for (int i = 0; i < NSEQ; i++)
        total += lens[i];
    float *a = floats(total * D), *b = floats(total * D);
    for (int round = 0;; round++) {
        int64_t seqs[LAYERS][NSEQ], cu[NSEQ + 1] = {0}, take[NSEQ];
        int m = 0;
        for (int i = 0; i < NSEQ; i++) {
            int64_t n = round == 0 ? prompts[i] : chunk;
            take[i] = n < lens[i] - done[i] ? n : lens[i] - done[i];
            if (take[i] == 0)
                continue;
            memcpy(a + cu[m] * D, x[i] + done[i] * D, (size_t)(take[i] * D) * sizeof(float));
            for (int l = 0; l < LAYERS; l++)
                seqs[l][m] = ids[l][i];
            cu[m + 1] = cu[m] + take[i];
            m++;
        }
        if (m == 0)
            break;
        float *in = a;
        for (int l = 0; l < LAYERS; l++) {
            float *o = in_place ? in : (in == a ? b : a);
            assert_int_equal(attn_encoder_layer_forward_cached(ctx, s->layer[l], cache[l], m,
                                                               seqs[l], cu, in, o),
                             ATTN_OK);
            in = o;
        }
        for (int i = 0, j = 0; i < NSEQ; i++) {
            if (take[i] == 0)
                continue;
            memcpy(out[i] + done[i] * D, in + cu[j] * D, (size_t)(take[i] * D) * sizeof(float));
            done[i] += take[i];
            j++;
        }
    }
    for (int l = 0; l < LAYERS; l++) {
        for (int i = 0; i < NSEQ; i++) {
            int64_t len;
            assert_int_equal(attn_kv_cache_seq_len(cache[l], ids[l][i], &len), ATTN_OK);
            assert_int_equal(len, lens[i]);
        }
        attn_kv_cache_destroy(cache[l]);
    }
    free(a), free(b);
}

static double worst;

static void check_equal(const char *what, const float *cached, const float *full, int64_t len)
{
    double *r = malloc((size_t)(len * D) * sizeof *r);
    assert_non_null(r);
    for (int64_t i = 0; i < len * D; i++)
        r[i] = full[i];
    int64_t at;
    double e = tu_max_err(cached, r, len * D, D, &at);
    if (e > TOL)
        print_error("%s: row %lld, element %lld: %.9g against %.9g (error %.3g)\n", what,
                    (long long)(at / D), (long long)(at % D), (double)cached[at], r[at], e);
    assert_true(e <= TOL);
    worst = e > worst ? e : worst;
    free(r);
}

static void run_equivalence(const stack *s, const char *name, uint64_t seed)
{
    const int64_t lens[NSEQ] = {37, 12, 1}, prompts[NSEQ] = {5, 12, 1};
    const int64_t chunks[3] = {1, 3, 64};
    /* ATTN_TEST_QUICK=1 (the Valgrind run): 2 threads, token by token out of
     * place and chunks of 64 in place only. */
    const char *quick_env = getenv("ATTN_TEST_QUICK");
    int quick = quick_env && quick_env[0] == '1';
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    float *x[NSEQ], *full[NSEQ], *got[NSEQ];
    for (int threads = quick ? 2 : 1; threads <= 2; threads++) {
        attn_context *ctx = context(threads);
        for (int i = 0; i < NSEQ; i++) {
            x[i] = floats(lens[i] * D), full[i] = floats(lens[i] * D);
            got[i] = floats(lens[i] * D);
            tu_fill_normal(&rng, x[i], (size_t)(lens[i] * D), 0.0f, 1.0f);
            full_forward(ctx, s, lens[i], x[i], full[i]);
        }
        for (int c = 0; c < 3; c++)
            for (int in_place = 0; in_place <= 1; in_place++) {
                if (quick && (c == 1 || in_place != (c == 2)))
                    continue;
                /* Pages of 4 tokens: most steps cross or fill one. */
                decode(ctx, s, lens, prompts, chunks[c], in_place, x, got, 4, 64);
                for (int i = 0; i < NSEQ; i++) {
                    char what[128];
                    snprintf(what, sizeof what,
                             "%s: sequence %d (%lld tokens), chunks of %lld, %s, %d threads",
                             name, i, (long long)lens[i], (long long)chunks[c],
                             in_place ? "in place" : "out of place", threads);
                    check_equal(what, got[i], full[i], lens[i]);
                }
            }
        for (int i = 0; i < NSEQ; i++)
            free(x[i]), free(full[i]), free(got[i]);
        attn_context_destroy(ctx);
    }
}

/* ---- 1. a causal stack -------------------------------------------------------- */

static void test_stack_equals_full_forward(void **state)
{
    (void)state;
    for (int align = 0; align < 2; align++) {
        stack s = make_stack(7 + (uint64_t)align,
                             align ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_TOP_LEFT);
        run_equivalence(&s, align ? "bottom-right" : "top-left", 100 + (uint64_t)align);
        free_stack(&s);
    }
    print_message("encoder cached: worst row-normalised error against one causal forward "
                  "%.2g (bound %.0e)\n", worst, TOL);
    worst = 0.0;
}

/* ---- 2. RoPE in the self-attention ---------------------------------------------- */

static void test_rope_in_self_attention(void **state)
{
    (void)state;
    stack s = make_stack(11, ATTN_CAUSAL_TOP_LEFT);
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(&rope, D / NHEAD, D / NHEAD, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_OK);
    for (int l = 0; l < LAYERS; l++)
        assert_int_equal(attn_mha_set_rope(s.layer[l]->self_attn, rope), ATTN_OK);
    attn_rope_destroy(rope);
    run_equivalence(&s, "rope", 200);
    print_message("encoder cached with RoPE: worst row-normalised error %.2g\n", worst);
    worst = 0.0;
    free_stack(&s);
}

/* ---- 3. a long sequence: keys split into blocks ------------------------------------- */

/* One sequence of 1,100 tokens decoded one at a time: past 512 cached keys
 * the attention splits them into blocks whose partial results it merges. */
static void test_long_sequence(void **state)
{
    (void)state;
    enum { LONG = 1100 };
    stack s = make_stack(13, ATTN_CAUSAL_TOP_LEFT);
    tu_rng rng;
    tu_rng_seed(&rng, 300);
    const int64_t lens[NSEQ] = {LONG, 0, 0}, prompts[NSEQ] = {1, 0, 0};
    float *x[NSEQ], *full[NSEQ], *got[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        x[i] = floats(lens[i] * D), full[i] = floats(lens[i] * D), got[i] = floats(lens[i] * D);
        tu_fill_normal(&rng, x[i], (size_t)(lens[i] * D), 0.0f, 1.0f);
    }
    attn_context *ctx = context(2);
    full_forward(ctx, &s, LONG, x[0], full[0]);
    decode(ctx, &s, lens, prompts, 1, 0, x, got, 16, LONG / 16 + 8);
    check_equal("1,100 tokens one at a time", got[0], full[0], LONG);
    print_message("encoder cached, 1,100 tokens (split keys): worst row-normalised error %.2g\n",
                  worst);
    worst = 0.0;
    for (int i = 0; i < NSEQ; i++)
        free(x[i]), free(full[i]), free(got[i]);
    attn_context_destroy(ctx);
    free_stack(&s);
}

/* ---- 4. errors -------------------------------------------------------------------- */

static void assert_untouched(const attn_kv_cache *cache, int64_t seq, int64_t len,
                             const float *out, int64_t n)
{
    int64_t now;
    assert_int_equal(attn_kv_cache_seq_len(cache, seq, &now), ATTN_OK);
    assert_int_equal(now, len);
    for (int64_t i = 0; i < n; i++)
        assert_true(out[i] == 7.0f);
}

static void test_errors(void **state)
{
    (void)state;
    attn_context *ctx = context(1);
    attn_encoder_layer *layer = NULL;
    assert_int_equal(attn_encoder_layer_create(&layer, D, NHEAD, FF, ATTN_ACTIVATION_GELU, 1,
                                               1e-5f),
                     ATTN_OK);
    attn_kv_cache *cache = NULL, *wrong = NULL, *small = NULL;
    assert_int_equal(attn_kv_cache_create(&cache, NHEAD, D / NHEAD, D / NHEAD, 4, 4), ATTN_OK);
    assert_int_equal(attn_kv_cache_create(&wrong, NHEAD / 2, 2 * D / NHEAD, 2 * D / NHEAD, 4, 4),
                     ATTN_OK);
    assert_int_equal(attn_kv_cache_create(&small, NHEAD, D / NHEAD, D / NHEAD, 4, 1), ATTN_OK);
    int64_t s0, s1, w0, m0;
    assert_int_equal(attn_kv_cache_seq_open(cache, &s0), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_open(cache, &s1), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_open(wrong, &w0), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_open(small, &m0), ATTN_OK);
    float src[2 * D] = {0}, out[2 * D];
    for (int i = 0; i < 2 * D; i++)
        out[i] = 7.0f;
    int64_t seqs[2] = {s0, s0}, cu[3] = {0, 1, 2}, down[3] = {0, 2, 1}, six[2] = {0, 6};

    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, cu, src, out),
                     ATTN_ERR_STATE);
    assert_non_null(strstr(attn_last_error(), "parameters"));
    int64_t count;
    assert_int_equal(attn_encoder_layer_param_count(layer, &count), ATTN_OK);
    float *params = calloc((size_t)count, sizeof *params);
    assert_int_equal(attn_encoder_layer_set_params(layer, params), ATTN_OK);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, cu, src, out),
                     ATTN_ERR_STATE);
    assert_non_null(strstr(attn_last_error(), "causal"));
    assert_int_equal(attn_encoder_layer_set_causal(layer, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);

    assert_int_equal(attn_encoder_layer_forward_cached(NULL, layer, cache, 1, seqs, cu, src, out),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, NULL, cache, 1, seqs, cu, src, out),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, NULL, 1, seqs, cu, src, out),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, -1, seqs, cu, src, out),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, NULL, cu, src, out),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, NULL, src,
                                                       out),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 2, seqs, down, src,
                                                       out),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 2, seqs, cu, src, out),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "twice"));
    int64_t closed = 99;
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, &closed, cu, src,
                                                       out),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, cu, NULL, out),
                     ATTN_ERR_NULL_POINTER);
    assert_non_null(strstr(attn_last_error(), "src"));
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, cu, src, NULL),
                     ATTN_ERR_NULL_POINTER);
    int64_t both[2] = {s0, s1};
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 2, both, cu, src,
                                                       src + 1),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "overlaps"));
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, wrong, 1, &w0, cu, src, out),
                     ATTN_ERR_SHAPE_MISMATCH);
    /* 6 tokens need 2 pages of 4; the small cache has 1. */
    float big_src[6 * D] = {0}, big_out[6 * D];
    for (int i = 0; i < 6 * D; i++)
        big_out[i] = 7.0f;
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, small, 1, &m0, six, big_src,
                                                       big_out),
                     ATTN_ERR_STATE);
    assert_untouched(small, m0, 0, big_out, 6 * D);
    assert_untouched(cache, s0, 0, out, 2 * D);

    /* Nothing to do is fine; one token then works and is appended. */
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 0, NULL, NULL, NULL,
                                                       NULL),
                     ATTN_OK);
    assert_int_equal(attn_encoder_layer_forward_cached(ctx, layer, cache, 1, seqs, cu, src, out),
                     ATTN_OK);
    int64_t len;
    assert_int_equal(attn_kv_cache_seq_len(cache, s0, &len), ATTN_OK);
    assert_int_equal(len, 1);
    assert_int_equal(attn_kv_cache_seq_len(cache, s1, &len), ATTN_OK);
    assert_int_equal(len, 0);
    free(params);
    attn_kv_cache_destroy(cache);
    attn_kv_cache_destroy(wrong);
    attn_kv_cache_destroy(small);
    attn_encoder_layer_destroy(layer);
    attn_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_equals_full_forward),
        cmocka_unit_test(test_rope_in_self_attention),
        cmocka_unit_test(test_long_sequence),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("encoder_cached", tests, NULL, NULL);
}
