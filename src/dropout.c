/*
 * dropout.c — seeded dropout on the attention weights (Srivastava et al.
 * 2014; applied after the softmax as PyTorch's dropout_p), whose keep
 * decisions come from a counter-based generator so that they are a pure
 * function of (seed, b, h, i, j): the backward regenerates the forward's
 * mask instead of storing it, and threads cannot change it.
 *
 * The generator is Philox 4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel
 * Random Numbers: As Easy as 1, 2, 3", SC 2011), checked against Random123's
 * known-answer vectors in tests/test_dropout.c. One call maps a 128-bit
 * counter and a 64-bit key to four 32-bit words:
 *
 *   key     = (seed mod 2^32, seed >> 32)
 *   counter = (j / 4, i, b · heads_q + h, 0)
 *   word    = output[j mod 4]
 *   keep    = word >= threshold,  threshold = round(p · 2^32)
 *
 * so a weight is kept with probability 1 − threshold / 2^32 (= 1 − p within
 * 2^-33) and scaled by 1 / (1 − p). The counter's words hold len_kv / 4,
 * len_q and batch · heads_q below 2^32; larger shapes with dropout are
 * ATTN_ERR_UNSUPPORTED (sdpa.c).
 *
 * The encoder layer drops elements of [rows, n] activations too: element
 * (r, c) of site s (1, 2, 3: encoder.c) is word c mod 4 of counter
 * (c / 4, r mod 2^32, r >> 32, s) under the same key. The attention's
 * counters end in 0, so no two sites of one seed share a draw.
 */
#include <math.h>

#include "attn_internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

attn_dropout attn_dropout_make(float p, uint64_t seed)
{
    attn_dropout d = {.p = p, .seed = seed};
    double t = nearbyint((double)p * 4294967296.0);
    d.threshold = t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
    d.scale = p > 0.0f ? (float)(1.0 / (1.0 - (double)p)) : 1.0f;
    return d;
}

/* Philox 4x32-10 of GROUP consecutive counters, (c0 + l, c1, c2, c3) for
 * lanes l: the rounds written out over the lanes at once, so that the
 * compiler vectorises the 32×32→64 multiplies. out[w][l] is word w of lane
 * l. */
#define GROUP 16

ATTN_VECTOR_CLONES
static void philox_group(const uint32_t counter[4], const uint32_t key[2],
                         uint32_t out[4][GROUP])
{
    uint32_t c0[GROUP], c1[GROUP], c2[GROUP], c3[GROUP], k0 = key[0], k1 = key[1];
    for (int l = 0; l < GROUP; l++)
        c0[l] = counter[0] + (uint32_t)l, c1[l] = counter[1], c2[l] = counter[2],
        c3[l] = counter[3];
    for (int round = 0; round < 10; round++) {
#pragma omp simd
        for (int l = 0; l < GROUP; l++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[l], p1 = (uint64_t)PHILOX_M1 * c2[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
            c1[l] = (uint32_t)p1, c3[l] = (uint32_t)p0, c0[l] = n0, c2[l] = n2;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    for (int l = 0; l < GROUP; l++)
        out[0][l] = c0[l], out[1][l] = c1[l], out[2][l] = c2[l], out[3][l] = c3[l];
}

/* The generator itself, lane 0 of a group: the known-answer test checks
 * the very code that draws the masks. */
void attn_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t words[4][GROUP];
    philox_group(counter, key, words);
    for (int w = 0; w < 4; w++)
        out[w] = words[w][0];
}

/* The 4 · GROUP words of the elements j0 .. j0 + 4·GROUP − 1 (j0 a
 * multiple of 4) of the row whose counters end in (c1, c2, c3), in element
 * order: one group of counters (j0 / 4 + l, c1, c2, c3), element j in word
 * j mod 4. */
static void group_words(const attn_dropout *d, uint32_t c1, uint32_t c2, uint32_t c3,
                        int64_t j0, uint32_t flat[4 * GROUP])
{
    const uint32_t counter[4] = {(uint32_t)(j0 / 4), c1, c2, c3};
    const uint32_t key[2] = {(uint32_t)d->seed, (uint32_t)(d->seed >> 32)};
    uint32_t words[4][GROUP];
    philox_group(counter, key, words);
    for (int l = 0; l < GROUP; l++)
        for (int w = 0; w < 4; w++)
            flat[4 * l + w] = words[w][l];
}

/* x[t] = kept (words[t] >= threshold) ? x[t] · scale : 0 for t < n. */
ATTN_VECTOR_CLONES
static void apply_words(const uint32_t *words, uint32_t threshold, float scale, float *x,
                        int64_t n)
{
#pragma omp simd
    for (int64_t t = 0; t < n; t++)
        x[t] = words[t] >= threshold ? x[t] * scale : 0.0f;
}

/* Applies the keep decisions of elements j0 .. j0 + n − 1 of a row (counters
 * ending in c1, c2, c3) to x[0 .. n). Groups start at a multiple of 4 (a
 * counter's first word), so a row that starts inside one (a window's first
 * key) skips its first words. */
static void apply_row(const attn_dropout *d, uint32_t c1, uint32_t c2, uint32_t c3, int64_t j0,
                      float *x, int64_t n)
{
    uint32_t flat[4 * GROUP];
    int64_t end = j0 + n;
    for (int64_t g = j0 - j0 % 4; g < end; g += 4 * GROUP) {
        int64_t m = end - g < 4 * GROUP ? end - g : 4 * GROUP;
        int64_t skip = g < j0 ? j0 - g : 0;  /* words of elements before j0 */
        group_words(d, c1, c2, c3, g, flat);
        apply_words(flat + skip, d->threshold, d->scale, x + (g + skip - j0), m - skip);
    }
}

void attn_dropout_apply(const attn_dropout *d, int64_t bh, int64_t i, int64_t j0, float *row,
                        int64_t n)
{
    /* The attention weights' row (bh, i): counters (j / 4, i, bh, 0). */
    apply_row(d, (uint32_t)i, (uint32_t)bh, 0, j0, row, n);
}

void attn_dropout_keep_row(const attn_dropout *d, int64_t bh, int64_t i, uint8_t *keep,
                           int64_t n)
{
    uint32_t flat[4 * GROUP];
    for (int64_t j0 = 0; j0 < n; j0 += 4 * GROUP) {
        group_words(d, (uint32_t)i, (uint32_t)bh, 0, j0, flat);
        int64_t m = n - j0 < 4 * GROUP ? n - j0 : 4 * GROUP;
        for (int64_t t = 0; t < m; t++)
            keep[j0 + t] = flat[t] >= d->threshold;
    }
}

void attn_dropout_apply_elements(const attn_dropout *d, uint32_t site, int64_t r, float *row,
                                 int64_t n)
{
    apply_row(d, (uint32_t)r, (uint32_t)((uint64_t)r >> 32), site, 0, row, n);
}

attn_status attn_dropout_check_range(const attn_dropout *d, int64_t batch, int64_t heads,
                                     int64_t len_q, int64_t len_kv, const char *func)
{
    if (!d || d->p == 0.0f)
        return ATTN_OK;
    /* batch × heads is unchecked when the tensors are empty: it may not fit. */
    int64_t batch_heads;
    if (!attn_mul_i64(batch, heads, &batch_heads))
        batch_heads = INT64_MAX;
    if (batch_heads > ATTN_DROPOUT_MAX_INDEX || len_q > ATTN_DROPOUT_MAX_INDEX ||
        len_kv / 4 > ATTN_DROPOUT_MAX_INDEX)
        return attn_fail(ATTN_ERR_UNSUPPORTED, func,
                         "dropout numbers weights with 32-bit counters: batch × heads, len_q "
                         "and len_kv / 4 must be below 2^32");
    return ATTN_OK;
}

attn_status attn_dropout_set(attn_dropout *d, float p, uint64_t seed, const char *func)
{
    if (!(p >= 0.0f && p < 1.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "p (%g) is not in [0, 1)", (double)p);
    *d = attn_dropout_make(p, seed);
    return ATTN_OK;
}
