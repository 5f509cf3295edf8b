/*
 * seed_example.c — the seeds' worked examples, run through libattn.
 *
 * 1. UvA Deep Learning tutorial 6 ("Transformers and Multi-Head Attention"),
 *    scaled dot-product attention with seq_len 3, d_k 2: the tutorial prints
 *    Q, K, V (made with pl.seed_everything(42) and torch.randn) and the
 *    resulting Values and Attention. The tensors below are the printed ones.
 * 2. D2L §10.3 masked softmax: queries (2, 1, 2), keys all ones (2, 10, 2),
 *    values arange(40).reshape(1, 10, 4) repeated for both batch rows,
 *    valid_lens = [2, 6]; every key has the same logit, so each output is the
 *    mean of the first valid_len value rows: [2, 3, 4, 5] and [10, 11, 12, 13].
 *
 * Build against the installed library:
 *     cc seed_example.c $(pkg-config --cflags --libs attn) -o seed_example
 */
#include <attn.h>
#include <stdio.h>

/* Prints a rows × cols matrix like PyTorch prints a 2-D tensor. */
static void print_tensor(const char *name, const float *x, int rows, int cols)
{
    printf("%s\n tensor([", name);
    for (int r = 0; r < rows; r++) {
        printf(r == 0 ? "[" : "        [");
        for (int c = 0; c < cols; c++)
            printf("%s%7.4f", c ? ", " : "", (double)x[r * cols + c]);
        printf(r + 1 < rows ? "],\n" : "]])\n");
    }
}

static int fail(const char *what, attn_status st)
{
    fprintf(stderr, "%s failed: %s (%s)\n", what, attn_status_string(st), attn_last_error());
    return 1;
}

static int uva_tutorial_example(attn_context *ctx)
{
    const float q[3 * 2] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const float k[3 * 2] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const float v[3 * 2] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    float values[3 * 2], attention[3 * 3];

    attn_sdpa *op = NULL;
    attn_status st = attn_sdpa_create(&op, 1, 1, 1, 3, 3, 2, 2);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx, op, q, k, v, NULL, values, attention, NULL);
    attn_sdpa_destroy(op);
    if (st != ATTN_OK)
        return fail("UvA example", st);

    printf("== UvA tutorial 6: scaled dot-product attention, seq_len 3, d_k 2 ==\n");
    print_tensor("Q", q, 3, 2);
    print_tensor("K", k, 3, 2);
    print_tensor("V", v, 3, 2);
    print_tensor("Values", values, 3, 2);
    print_tensor("Attention", attention, 3, 3);
    return 0;
}

static int d2l_valid_lens_example(attn_context *ctx)
{
    enum { B = 2, LQ = 1, LKV = 10, D = 2, DV = 4 };
    /* D2L draws the queries with torch.normal(0, 1, (2, 1, 2)); with keys all
     * ones and valid lengths the output does not depend on them. */
    const float queries[B * LQ * D] = {0.5f, -1.25f, 2.0f, 0.75f};
    float keys[B * LKV * D], values[B * LKV * DV], out[B * LQ * DV], weights[B * LQ * LKV];
    for (int i = 0; i < B * LKV * D; i++)
        keys[i] = 1.0f;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < LKV * DV; i++)
            values[b * LKV * DV + i] = (float)i;
    const int64_t valid_lens[B] = {2, 6};

    attn_sdpa *op = NULL;
    attn_mask *mask = NULL;
    attn_status st = attn_sdpa_create(&op, B, 1, 1, LQ, LKV, D, DV);
    if (st == ATTN_OK)
        st = attn_mask_create(&mask);
    if (st == ATTN_OK)
        st = attn_mask_set_kv_lengths(mask, valid_lens, B, LQ, 0);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx, op, queries, keys, values, mask, out, weights, NULL);
    attn_mask_destroy(mask);
    attn_sdpa_destroy(op);
    if (st != ATTN_OK)
        return fail("D2L example", st);

    printf("\n== D2L 10.3: dot-product attention with valid_lens = [2, 6] ==\n");
    for (int b = 0; b < B; b++) {
        char name[32];
        snprintf(name, sizeof name, "output[%d]", b);
        print_tensor(name, out + b * DV, 1, DV);
        snprintf(name, sizeof name, "weights[%d]", b);
        print_tensor(name, weights + b * LKV, 1, LKV);
    }
    return 0;
}

int main(void)
{
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st != ATTN_OK)
        return fail("attn_context_create", st);
    printf("libattn %s\n\n", attn_version_string());
    int rc = uva_tutorial_example(ctx) || d2l_valid_lens_example(ctx);
    attn_context_destroy(ctx);
    return rc;
}
