/*
 * decode_example.c — token-by-token decoding with libattn's paged KV cache.
 *
 * A multi-head self-attention layer (embed 64, 8 query heads sharing 2
 * key/value heads, RoPE) decodes two sequences at once: both prompts (5
 * and 3 tokens) go through the layer in one ragged call (cu_q = {0, 5, 8}),
 * then each step feeds one new token per sequence. The layer appends each
 * token's keys and values to the cache and attends to everything cached, so
 * a step costs one token's projections and one read of the cache.
 *
 * At the end it checks itself: one causal forward over each whole sequence
 * (what a program without a cache recomputes at every step) gives the same
 * outputs to float32 rounding.
 *
 * Build against the installed library:
 *     cc decode_example.c $(pkg-config --cflags --libs attn) -lm -o decode_example
 */
#include <attn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { E = 64, HEADS = 8, KV_HEADS = 2, HEAD_DIM = E / HEADS, STEPS = 6 };

static int fail(const char *what, attn_status st)
{
    fprintf(stderr, "%s failed: %s (%s)\n", what, attn_status_string(st), attn_last_error());
    return 1;
}

/* Deterministic stand-ins for trained weights and token embeddings. */
static void fill(float *x, int64_t n, unsigned seed, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
}

#define CHECK(call)                          \
    do {                                     \
        attn_status st_ = (call);            \
        if (st_ != ATTN_OK)                  \
            return fail(#call, st_);         \
    } while (0)

int main(void)
{
    attn_context *ctx = NULL;
    attn_mha *mha = NULL;
    attn_rope *rope = NULL;
    attn_kv_cache *cache = NULL;
    CHECK(attn_context_create(&ctx));
    CHECK(attn_mha_create(&mha, E, HEADS, KV_HEADS, E, E, 1));
    int64_t n_params;
    CHECK(attn_mha_param_count(mha, &n_params));
    float *params = malloc((size_t)n_params * sizeof *params);
    fill(params, n_params, 1, 0.5f);
    CHECK(attn_mha_set_params(mha, params));
    CHECK(attn_mha_set_causal(mha, ATTN_CAUSAL_BOTTOM_RIGHT));
    CHECK(attn_rope_create(&rope, HEAD_DIM, HEAD_DIM, 10000.0f, ATTN_ROPE_HALF));
    CHECK(attn_mha_set_rope(mha, rope));  /* the layer keeps a copy */

    /* 16 pages of 4 tokens: enough for both sequences (at most 11 tokens each). */
    CHECK(attn_kv_cache_create(&cache, KV_HEADS, HEAD_DIM, HEAD_DIM, 4, 16));
    int64_t seqs[2];
    CHECK(attn_kv_cache_seq_open(cache, &seqs[0]));
    CHECK(attn_kv_cache_seq_open(cache, &seqs[1]));

    /* Every token's input row, and the cached layer's output row. */
    const int64_t prompt[2] = {5, 3};
    float x[2][16 * E], y[2][16 * E];
    fill(x[0], prompt[0] * E, 2, 2.0f);
    fill(x[1], prompt[1] * E, 3, 2.0f);

    /* Prefill: both prompts in one call. */
    float in[16 * E], out[16 * E];
    int64_t cu[3] = {0, prompt[0], prompt[0] + prompt[1]};
    memcpy(in, x[0], (size_t)(prompt[0] * E) * sizeof(float));
    memcpy(in + prompt[0] * E, x[1], (size_t)(prompt[1] * E) * sizeof(float));
    CHECK(attn_mha_forward_cached(ctx, mha, cache, 2, seqs, cu, in, out));
    memcpy(y[0], out, (size_t)(prompt[0] * E) * sizeof(float));
    memcpy(y[1], out + prompt[0] * E, (size_t)(prompt[1] * E) * sizeof(float));

    /* Decode: one token per sequence per step. The next token's input is
     * made from the last output (a stand-in for sampling and embedding). */
    int64_t len[2] = {prompt[0], prompt[1]}, one[3] = {0, 1, 2};
    for (int step = 0; step < STEPS; step++) {
        for (int s = 0; s < 2; s++) {
            for (int c = 0; c < E; c++)
                x[s][len[s] * E + c] = tanhf(y[s][(len[s] - 1) * E + c]);
            memcpy(in + s * E, x[s] + len[s] * E, E * sizeof(float));
        }
        CHECK(attn_mha_forward_cached(ctx, mha, cache, 2, seqs, one, in, out));
        for (int s = 0; s < 2; s++) {
            memcpy(y[s] + len[s] * E, out + s * E, E * sizeof(float));
            len[s]++;
        }
        printf("step %d: sequence 0 has %lld tokens, out[0..3] = %+.4f %+.4f %+.4f %+.4f\n",
               step + 1, (long long)len[0], (double)out[0], (double)out[1], (double)out[2],
               (double)out[3]);
    }

    /* The check: one causal forward over each whole sequence. */
    for (int s = 0; s < 2; s++) {
        int64_t cached;
        CHECK(attn_kv_cache_seq_len(cache, seqs[s], &cached));
        float full[16 * E];
        CHECK(attn_mha_forward(ctx, mha, 1, len[s], len[s], x[s], x[s], x[s], NULL, full, NULL));
        double worst = 0.0;
        for (int64_t i = 0; i < len[s] * E; i++)
            worst = fmax(worst, fabs((double)full[i] - y[s][i]));
        printf("sequence %d: %lld tokens cached; cached vs full forward: max |diff| %.2g\n", s,
               (long long)cached, worst);
        if (cached != len[s] || worst > 1e-4)
            return fail("the check", ATTN_ERR_STATE);
    }
    free(params);
    attn_kv_cache_destroy(cache);
    attn_rope_destroy(rope);
    attn_mha_destroy(mha);
    attn_context_destroy(ctx);
    return 0;
}
