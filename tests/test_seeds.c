/*
 * test_seeds.c — the seed documents' worked examples, with their published
 * numbers as the expected values (data from outside the project: the only
 * kind of golden value these tests use).
 *
 *  - UvA Deep Learning tutorial 6 (seed 004): Q, K, V of seq_len 3, d_k 2 as
 *    printed (4 decimals), Values and Attention as printed. The inputs are
 *    rounded, so the outputs agree to 2e-4, not to the last digit.
 *  - D2L §10.3 (masked softmax / valid_lens): keys all ones, values
 *    arange(40).reshape(1, 10, 4) repeated twice, valid_lens [2, 6] →
 *    [2, 3, 4, 5] and [10, 11, 12, 13]; and the 2-D (per-query) form
 *    valid_lens = [[1, 3], [2, 4]] with two queries per batch row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <attn.h>
#include <math.h>
#include <string.h>

static void assert_close(const float *got, const float *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <= tol))
            fail_msg("element %zu: got %.6f, want %.6f (tolerance %g)", i, (double)got[i],
                     (double)want[i], tol);
}

static void uva_tutorial_example(void **state)
{
    (void)state;
    const float q[] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const float k[] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const float v[] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    const float values_published[] = {0.5698f, -0.1520f, 0.5379f, -0.0265f, 0.2246f, 0.5556f};
    const float attention_published[] = {0.4028f, 0.2886f, 0.3086f, 0.3538f, 0.3069f,
                                         0.3393f, 0.1303f, 0.4630f, 0.4067f};
    float values[6], attention[9];

    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&op, 1, 1, 1, 3, 3, 2, 2), ATTN_OK);
    assert_int_equal(attn_sdpa_forward(ctx, op, q, k, v, NULL, values, attention, NULL), ATTN_OK);
    assert_close(values, values_published, 6, 2e-4);
    assert_close(attention, attention_published, 9, 2e-4);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
}

enum { B = 2, LKV = 10, D = 2, DV = 4 };

/* D2L's tensors: keys all ones, values arange(40).reshape(1, 10, 4) twice. */
static void d2l_keys_values(float *keys, float *values)
{
    for (int i = 0; i < B * LKV * D; i++)
        keys[i] = 1.0f;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < LKV * DV; i++)
            values[b * LKV * DV + i] = (float)i;
}

/* With equal logits the output is the mean of the first `len` value rows of
 * arange(40).reshape(10, 4): row r is [4r, 4r+1, 4r+2, 4r+3], so the mean
 * is 2(len − 1) + c for column c. */
static void mean_of_first_rows(int len, float *row)
{
    for (int c = 0; c < DV; c++)
        row[c] = 2.0f * (float)(len - 1) + (float)c;
}

static void run_valid_lens(int lq, const float *queries, const int64_t *lens, int per_query,
                           float *out)
{
    float keys[B * LKV * D], values[B * LKV * DV];
    d2l_keys_values(keys, values);
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    attn_mask *mask = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&op, B, 1, 1, lq, LKV, D, DV), ATTN_OK);
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(mask, lens, B, lq, per_query), ATTN_OK);
    assert_int_equal(attn_sdpa_forward(ctx, op, queries, keys, values, mask, out, NULL, NULL),
                     ATTN_OK);
    attn_mask_destroy(mask);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
}

static void d2l_valid_lens_per_batch(void **state)
{
    (void)state;
    const float queries[B * 1 * D] = {0.3f, -1.7f, 2.2f, 0.4f};  /* any values do */
    const int64_t lens[B] = {2, 6};
    const float want[B * DV] = {2, 3, 4, 5, 10, 11, 12, 13};
    float out[B * DV];
    run_valid_lens(1, queries, lens, 0, out);
    assert_close(out, want, B * DV, 1e-5);
}

static void d2l_valid_lens_per_query(void **state)
{
    (void)state;
    const float queries[B * 2 * D] = {0.3f, -1.7f, 2.2f, 0.4f, -0.9f, 1.1f, 0.0f, 0.5f};
    const int64_t lens[B * 2] = {1, 3, 2, 4};
    float want[B * 2 * DV], out[B * 2 * DV];
    for (int i = 0; i < B * 2; i++)
        mean_of_first_rows((int)lens[i], want + i * DV);
    run_valid_lens(2, queries, lens, 1, out);
    assert_close(out, want, B * 2 * DV, 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uva_tutorial_example),
        cmocka_unit_test(d2l_valid_lens_per_batch),
        cmocka_unit_test(d2l_valid_lens_per_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
