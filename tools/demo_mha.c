/*
 * demo_mha.c — the demo's fourth example: causal multi-head self-attention
 * (Vaswani et al. 2017 §3.2.2; D2L §10.5-10.6) over a short sequence whose
 * embeddings carry the sinusoidal positional encoding.
 *
 * Ten "tokens" with random 16-dimensional embeddings, plus the encoding of
 * their positions, go through a 4-head layer with the initial weights
 * PyTorch's nn.MultiheadAttention would draw (Xavier-uniform projections, no
 * biases), from the demo's fixed sequence. The layer is causal, so each
 * head's weights are lower triangular: a token attends itself and the tokens
 * before it. One panel per head shows how differently the heads spread their
 * attention before any training.
 */
#include <math.h>
#include <stdio.h>

#include "cli.h"
#include "demo.h"
#include "prng.h"
#include "tensor_print.h"

enum { LEN = 10, EMBED = 16, HEADS = 4 };

/* X = token embeddings + positional encoding, [1, LEN, EMBED]. */
static attn_status make_inputs(prng *g, float *x)
{
    float pe[LEN * EMBED];
    attn_status st = attn_positional_encoding(pe, LEN, EMBED, 0, 10000.0f);
    if (st != ATTN_OK)
        return st;
    prng_fill_normal(g, x, LEN * EMBED, 0.0, 0.5);
    for (int i = 0; i < LEN * EMBED; i++)
        x[i] += pe[i];
    return ATTN_OK;
}

/* nn.MultiheadAttention's initialisation: in_proj_weight [3E, E] Xavier
 * uniform, out_proj.weight like nn.Linear, uniform in ±1/sqrt(E). */
static attn_status set_weights(prng *g, attn_mha *mha)
{
    float w[EMBED * EMBED];
    double xavier = sqrt(6.0 / (EMBED + 3 * EMBED));
    attn_status st = ATTN_OK;
    for (int p = ATTN_PROJ_Q; p <= ATTN_PROJ_V && st == ATTN_OK; p++) {
        prng_fill_uniform(g, w, EMBED * EMBED, -xavier, xavier);
        st = attn_mha_set_weights(mha, (attn_proj)p, w, NULL);
    }
    if (st == ATTN_OK) {
        prng_fill_uniform(g, w, EMBED * EMBED, -1.0 / sqrt(EMBED), 1.0 / sqrt(EMBED));
        st = attn_mha_set_weights(mha, ATTN_PROJ_O, w, NULL);
    }
    return st;
}

/* The largest weight above the diagonal of any head: 0 when causal. */
static float above_diagonal(const float *weights)
{
    float worst = 0.0f;
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < LEN; i++)
            for (int j = i + 1; j < LEN; j++)
                worst = fmaxf(worst, weights[(h * LEN + i) * LEN + j]);
    return worst;
}

int demo_mha(const demo_env *env)
{
    float x[LEN * EMBED], out[LEN * EMBED], weights[HEADS * LEN * LEN];
    prng g;
    prng_seed(&g, 2017);
    attn_mha *mha = NULL;
    attn_status st = make_inputs(&g, x);
    if (st == ATTN_OK)
        st = attn_mha_create(&mha, EMBED, HEADS, HEADS, EMBED, EMBED, 0);
    if (st == ATTN_OK)
        st = set_weights(&g, mha);
    if (st == ATTN_OK)
        st = attn_mha_set_causal(mha, ATTN_CAUSAL_TOP_LEFT);
    if (st == ATTN_OK)
        st = attn_mha_forward(env->ctx, mha, 1, LEN, LEN, x, x, x, NULL, out, weights);
    attn_mha_destroy(mha);
    if (st != ATTN_OK)
        return demo_fail("multi-head self-attention", st);

    /* The last token sees the whole sequence: its row of each head. */
    float last[HEADS * LEN];
    for (int h = 0; h < HEADS; h++)
        for (int j = 0; j < LEN; j++)
            last[h * LEN + j] = weights[(h * LEN + LEN - 1) * LEN + j];
    const int64_t shape[2] = {HEADS, LEN};
    printf("== 5. Causal multi-head self-attention: %d tokens, embed %d, %d heads, "
           "sinusoidal positions ==\n", LEN, EMBED, HEADS);
    tensor_print(stdout, "Weights of the last token, one row per head", last, 2, shape);
    printf("Largest weight above the diagonal (a token attending a later one): %.4f\n",
           (double)above_diagonal(weights));

    static const char *const titles[HEADS] = {"head 1", "head 2", "head 3", "head 4"};
    svg_heatmap h = {.rows = 1, .cols = HEADS, .n_q = LEN, .n_k = LEN, .values = weights,
                     .titles = titles, .n_titles = HEADS};
    int rc = demo_save_heatmap(env, "mha-causal.svg", &h);
    static const char *const tokens[LEN] = {"token 0", "token 1", "token 2", "token 3",
                                            "token 4", "token 5", "token 6", "token 7",
                                            "token 8", "token 9"};
    const explorer_page page = {
        .title = "attn demo: causal multi-head self-attention, 4 heads",
        .source = "the demo's 10 random tokens with sinusoidal positions",
        .shape = {1, 1, HEADS, LEN, LEN}, .weights = weights,
        .query_tokens = tokens, .n_query_tokens = LEN,
    };
    return rc == CLI_OK ? demo_save_explorer(env, "mha-causal.html", &page) : rc;
}
