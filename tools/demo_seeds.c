/*
 * demo_seeds.c — the demo's first two examples, straight from the seeds.
 *
 * 1. UvA Deep Learning tutorial 6, "Transformers and Multi-Head Attention":
 *    scaled_dot_product(q, k, v) with seq_len 3, d_k 2 and the Q, K, V that
 *    pl.seed_everything(42) and torch.randn gave, as the tutorial prints them.
 * 2. D2L §10.3, "Attention Scoring Functions": masked softmax with
 *    valid_lens = [2, 6] through dot-product and additive attention. The keys
 *    are all ones, so every visible key gets the same score and each output
 *    is the mean of the first valid_len value rows, [2, 3, 4, 5] and
 *    [10, 11, 12, 13], whatever the queries and weights are.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "demo.h"
#include "prng.h"
#include "tensor_print.h"

/* The seed's printed tensors. */
static const float uva_q[3 * 2] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
static const float uva_k[3 * 2] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
static const float uva_v[3 * 2] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};

int demo_uva(const demo_env *env)
{
    float values[3 * 2], attention[3 * 3];
    attn_sdpa *op = NULL;
    attn_status st = attn_sdpa_create(&op, 1, 1, 1, 3, 3, 2, 2);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(env->ctx, op, uva_q, uva_k, uva_v, NULL, values, attention, NULL);
    attn_sdpa_destroy(op);
    if (st != ATTN_OK)
        return demo_fail("UvA tutorial 6 example", st);

    const int64_t qkv[2] = {3, 2}, att[2] = {3, 3};
    printf("== 1. UvA Deep Learning tutorial 6: scaled dot-product attention, "
           "seq_len 3, d_k 2 ==\n");
    tensor_print(stdout, "Q", uva_q, 2, qkv);
    tensor_print(stdout, "K", uva_k, 2, qkv);
    tensor_print(stdout, "V", uva_v, 2, qkv);
    tensor_print(stdout, "Values", values, 2, qkv);
    tensor_print(stdout, "Attention", attention, 2, att);
    printf("Note: the tutorial printed Values[0][0] as 0.5698. It printed Q, K and V\n"
           "rounded to 4 decimals, and from those rounded inputs the value is 0.56974\n"
           "(float64 NumPy agrees), so 0.5697 is printed here; every other figure\n"
           "matches the tutorial.\n");

    svg_heatmap h = {.rows = 1, .cols = 1, .n_q = 3, .n_k = 3, .values = attention};
    return demo_save_heatmap(env, "uva-attention.svg", &h);
}

enum { B = 2, LQ = 1, LKV = 10, DV = 4, ADD_QDIM = 20, ADD_KDIM = 2, ADD_HIDDEN = 8 };

/* D2L's keys torch.ones((2, 10, 2)) and values
 * torch.arange(40).reshape(1, 10, 4).repeat(2, 1, 1). */
static void d2l_keys_values(float *keys, float *values)
{
    for (int i = 0; i < B * LKV * ADD_KDIM; i++)
        keys[i] = 1.0f;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < LKV * DV; i++)
            values[b * LKV * DV + i] = (float)i;
}

static attn_status dot_product(attn_context *ctx, const attn_mask *mask, const float *keys,
                               const float *values, float *out, float *weights)
{
    /* D2L draws these with torch.normal(0, 1, (2, 1, 2)); any numbers do. */
    static const float queries[B * LQ * 2] = {0.5f, -1.25f, 2.0f, 0.75f};
    attn_sdpa *op = NULL;
    attn_status st = attn_sdpa_create(&op, B, 1, 1, LQ, LKV, 2, DV);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx, op, queries, keys, values, mask, out, weights, NULL);
    attn_sdpa_destroy(op);
    return st;
}

/* AdditiveAttention(key_size=2, query_size=20, num_hiddens=8) with queries
 * torch.normal(0, 1, (2, 1, 20)); the weights are drawn as nn.Linear draws
 * them, uniform in ±1/sqrt(in_features), from the demo's fixed sequence. */
static attn_status additive(attn_context *ctx, const attn_mask *mask, const float *keys,
                            const float *values, float *out, float *weights)
{
    float queries[B * LQ * ADD_QDIM], w_q[ADD_HIDDEN * ADD_QDIM], w_k[ADD_HIDDEN * ADD_KDIM],
        w_v[ADD_HIDDEN];
    prng g;
    prng_seed(&g, 103);
    prng_fill_normal(&g, queries, B * LQ * ADD_QDIM, 0.0, 1.0);
    prng_fill_uniform(&g, w_q, ADD_HIDDEN * ADD_QDIM, -1.0 / sqrt(ADD_QDIM), 1.0 / sqrt(ADD_QDIM));
    prng_fill_uniform(&g, w_k, ADD_HIDDEN * ADD_KDIM, -1.0 / sqrt(ADD_KDIM), 1.0 / sqrt(ADD_KDIM));
    prng_fill_uniform(&g, w_v, ADD_HIDDEN, -1.0 / sqrt(ADD_HIDDEN), 1.0 / sqrt(ADD_HIDDEN));
    attn_additive *op = NULL;
    attn_status st = attn_additive_create(&op, ADD_QDIM, ADD_KDIM, ADD_HIDDEN);
    if (st == ATTN_OK)
        st = attn_additive_set_weights(op, w_q, w_k, w_v);
    if (st == ATTN_OK)
        st = attn_additive_forward(ctx, op, B, LQ, LKV, DV, queries, keys, values, mask, out,
                                   weights);
    attn_additive_destroy(op);
    return st;
}

int demo_masked(const demo_env *env)
{
    static const int64_t valid_lens[B] = {2, 6};
    float keys[B * LKV * ADD_KDIM], values[B * LKV * DV];
    float out_dot[B * LQ * DV], out_add[B * LQ * DV];
    float weights[2 * B * LQ * LKV];  /* [dot-product, additive] x [B, LKV] */
    d2l_keys_values(keys, values);

    attn_mask *mask = NULL;
    const char *what = "D2L 10.3 mask";
    attn_status st = attn_mask_create(&mask);
    if (st == ATTN_OK)
        st = attn_mask_set_kv_lengths(mask, valid_lens, B, LQ, 0);
    if (st == ATTN_OK && (st = dot_product(env->ctx, mask, keys, values, out_dot, weights)))
        what = "D2L 10.3 dot-product attention";
    if (st == ATTN_OK &&
        (st = additive(env->ctx, mask, keys, values, out_add, weights + B * LQ * LKV)))
        what = "D2L 10.3 additive attention";
    attn_mask_destroy(mask);
    if (st != ATTN_OK)
        return demo_fail(what, st);

    const int64_t shape[3] = {B, LQ, DV};
    printf("== 2. D2L 10.3: masked softmax, valid_lens = [2, 6]; keys all ones, values "
           "arange(40) ==\n");
    tensor_print(stdout, "Dot-product attention", out_dot, 3, shape);
    tensor_print(stdout, "Additive attention (query_size 20, key_size 2, num_hiddens 8)",
                 out_add, 3, shape);

    static const char *const titles[2] = {"dot-product", "additive"};
    svg_heatmap h = {.rows = 1, .cols = 2, .n_q = B * LQ, .n_k = LKV, .values = weights,
                     .titles = titles, .n_titles = 2};
    return demo_save_heatmap(env, "masked-attention.svg", &h);
}
