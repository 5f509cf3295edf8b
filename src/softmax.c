/*
 * softmax.c — the masked, numerically safe softmax of one row of logits.
 *
 * Two passes over a row that is already scale·q·kᵀ (the GEMM applied the
 * scale): (1) score modifiers (softcap, ALiBi), mask and bias, then the
 * maximum; (2) exp(x − max) and the sum.
 * The division by the sum is left to the caller, who applies it to the
 * row's dim_v outputs of P·V rather than to its len_kv probabilities. Subtracting the
 * maximum keeps exp in range for any logits (D2L §4.4 "softmax revisited";
 * Milakov & Gimelshein 2018); the log-sum-exp follows as max + log(sum).
 *
 * Speed: the exp of pass 2 dominates. It is computed as
 * exp2f((x − max) · log2 e): glibc's vector exp2f skips expf's range
 * reduction and costs less even with the multiply (measured per element on
 * Zen 4, AVX-512, one thread: libmvec expf 0.34 ns, exp2f 0.275 ns; SLEEF
 * 3.5's exp2f u10/u35 0.264 ns and expf_u10 0.31 ns, not worth a second
 * dependency). The factor is applied after the subtraction, never folded
 * into the GEMM's alpha: folded, every logit would carry a rounding error
 * proportional to its size (logits of 10^6 moved weights by 2%, and
 * |logits| above 2.4e38 overflowed), where x − max carries one relative to
 * the difference, as expf(x − max) does. Accuracy: a weight e^-t gets a
 * relative error of about t · 2^-24 from the multiply (measured: 5.3e-7 at
 * most for t ≤ 10, 3.9e-6 for t ≤ 87, where expf gave 2.2e-7).
 *
 * libmvec provides vector exp2f (_ZGVeN16v_exp2f for AVX-512, _ZGVdN8v_exp2f
 * for AVX2; glibc 2.35 and later); declaring
 * exp2f "omp declare simd" lets GCC call them from `#pragma omp simd` loops,
 * and target_clones builds each hot loop for AVX-512, AVX2 and the baseline,
 * picked once at load time by the CPU. glibc's own <math.h> makes that
 * declaration only under -ffast-math, which would also assume away the
 * -INFINITY and NaN this file must handle exactly, so it is made here.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

#pragma omp declare simd notinbranch
float exp2f(float);

/* log2(e): e^x = 2^(x · log2 e). */
#define ATTN_LOG2E 1.44269504088896340736f

#pragma omp declare simd notinbranch
float tanhf(float);
#pragma omp declare simd notinbranch
float expf(float);

/* Pass 1a, over the visible keys [begin, end) only: the score modifiers and
 * masks, in the order the conventions fix (scale → softcap → bias, ALiBi,
 * masks). Softcap first, so a masked key stays -INFINITY and never becomes
 * −cap (the ONNX poison case); keys the boolean mask drops become
 * -INFINITY; the bias is added, and a -INFINITY bias masks the key whatever
 * its logit: NaN + -Inf would be NaN and leak a masked key's NaN into the
 * whole row. (Keys outside [begin, end) are not read at all:
 * attn_softmax_row zeroes them.) */
ATTN_VECTOR_CLONES
static void apply_softcap(float *row, int64_t begin, int64_t end, float cap, float *grad)
{
    if (grad) {
        /* 1 − tanh²(u) = sech²(u) = 4e / (1 + e)², e = exp(−2|u|): exact to
         * a few ulps where 1 − t·t of a rounded t near ±1 would keep few
         * digits. */
#pragma omp simd
        for (int64_t j = begin; j < end; j++) {
            float u = row[j] / cap;
            float e = expf(-2.0f * fabsf(u));
            row[j] = cap * tanhf(u);
            grad[j] = 4.0f * e / ((1.0f + e) * (1.0f + e));
        }
    } else {
#pragma omp simd
        for (int64_t j = begin; j < end; j++)
            row[j] = cap * tanhf(row[j] / cap);
    }
}

/* ALiBi's −slope · |pos − j|: the distance is an integer, exact in float up
 * to 2^24 keys. */
ATTN_VECTOR_CLONES
static void apply_alibi(float *row, int64_t begin, int64_t end, float slope, int64_t pos)
{
#pragma omp simd
    for (int64_t j = begin; j < end; j++)
        row[j] -= slope * fabsf((float)(pos - j));
}

ATTN_VECTOR_CLONES
static void apply_mask(float *row, int64_t begin, int64_t end, const attn_row_mask *m)
{
    const uint8_t *keep = m->keep;
    const float *bias = m->bias;
    if (m->softcap > 0.0f)
        apply_softcap(row, begin, end, m->softcap, m->softcap_grad);
    if (keep) {
#pragma omp simd
        for (int64_t j = begin; j < end; j++)
            row[j] = keep[j] ? row[j] : -INFINITY;
    }
    if (bias) {
#pragma omp simd
        for (int64_t j = begin; j < end; j++)
            row[j] = bias[j] == -INFINITY ? -INFINITY : row[j] + bias[j];
    }
    if (m->alibi_slope != 0.0f)
        apply_alibi(row, begin, end, m->alibi_slope, m->alibi_pos);
}

/* Pass 1b: the maximum and the minimum of the row. A NaN logit never wins
 * either (the comparisons are false), so a row with a NaN and finite logits
 * keeps a finite maximum and exp turns the NaN into a NaN sum: the whole
 * row, and only it, becomes NaN. The minimum costs nothing in this
 * memory-bound pass and tells pass 2 whether any term needs flushing. */
typedef struct row_range {
    float max, min;
} row_range;

ATTN_VECTOR_CLONES
static row_range row_min_max(const float *row, int64_t n)
{
    float max = -INFINITY, min = INFINITY;
#pragma omp simd reduction(max : max) reduction(min : min)
    for (int64_t j = 0; j < n; j++) {
        max = row[j] > max ? row[j] : max;
        min = row[j] < min ? row[j] : min;
    }
    return (row_range){max, min};
}

/* A maximum of -INFINITY means every key is masked, unless the visible
 * logits are all NaN (a NaN query): the rare case this pass tells apart. */
static bool any_nan(const float *row, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        if (isnan(row[j]))
            return true;
    return false;
}

/* Below this, exp(x) < 1.7e-38 (under FLT_MIN): the term is flushed to 0.
 * Why: libmvec's vector exp2f hands every lane outside its fast range to the
 * scalar exp2f one by one (as expf did), and exp(x − max) of far-apart
 * logits is mostly such lanes (measured with expf: a third of the softmax
 * time in the scalar fallback for a multi-head layer with random weights).
 * Against a sum >= 1 the flushed terms are below float precision by 30
 * orders of magnitude. */
#define ATTN_EXP_FLUSH (-87.0f)

/* Pass 2: row[j] = exp(row[j] − max); returns the sum. The sum runs in
 * float over vector lanes: each term is in [0, 1] and at least one is 1, so
 * its relative rounding error stays near n·2⁻²⁴ / lanes. NaN stays NaN (the
 * comparisons are false for it).
 *
 * Rows whose logits span less than 87 (the usual case: scaled dot products
 * of normalised activations) take the plain loop. Wider rows first clamp
 * their far terms in a loop of its own: written inside the exp loop as
 * `x < F ? 0 : exp2f(…(x < F ? F : x)…)`, GCC proves the clamped lanes'
 * result unused and calls exp2f on the unclamped x, which brings back the slow
 * lanes. */
ATTN_VECTOR_CLONES
static float exp_and_sum(float *row, int64_t n, float max)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float e = exp2f((row[j] - max) * ATTN_LOG2E);
        row[j] = e;
        sum += e;
    }
    return sum;
}

ATTN_VECTOR_CLONES
static float exp_and_sum_flushed(float *row, int64_t n, float max)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float x = row[j] - max;
        row[j] = x < ATTN_EXP_FLUSH ? ATTN_EXP_FLUSH : x;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float x = row[j];
        float e = x == ATTN_EXP_FLUSH ? 0.0f : exp2f(x * ATTN_LOG2E);
        row[j] = e;
        sum += e;
    }
    return sum;
}

/* Zeroes row[0..n) outside [begin, end), and the softcap factors there. */
static void zero_outside(float *row, int64_t n, int64_t begin, int64_t end,
                         const attn_row_mask *m)
{
    float *arrays[2] = {row, m->softcap > 0.0f ? m->softcap_grad : NULL};
    for (int a = 0; a < 2; a++) {
        if (!arrays[a] || n == 0)  /* row may be NULL then: no scratch for zero keys */
            continue;
        memset(arrays[a], 0, (size_t)begin * sizeof(float));
        memset(arrays[a] + end, 0, (size_t)(n - end) * sizeof(float));
    }
}

/* A row with no visible key: zeros, 1/sum 0, lse -INFINITY. */
static float empty_row(float *row, int64_t n, const attn_row_mask *m, float *inv_sum)
{
    zero_outside(row, n, 0, 0, m);
    *inv_sum = 0.0f;
    return -INFINITY;
}

/* The visible keys [*begin, *end) of a row of n computed keys. */
static void visible_span(const attn_row_mask *m, int64_t n, int64_t *begin, int64_t *end)
{
    int64_t e = m->visible_end < n ? m->visible_end : n;
    int64_t b = m->visible_begin > 0 ? m->visible_begin : 0;
    *begin = b;
    *end = e > b ? e : b;
}

float attn_softmax_row(float *row, int64_t n, const attn_row_mask *m, float *inv_sum)
{
    /* Keys outside the visible span (valid length, causal limit, window)
     * get weight 0 without being looked at: their logits may be NaN. */
    int64_t begin, end;
    visible_span(m, n, &begin, &end);
    apply_mask(row, begin, end, m);
    int64_t len = end - begin;
    float *vis = len > 0 ? row + begin : row;  /* row may be NULL with no keys */
    row_range range = row_min_max(vis, len);
    float max = range.max;
    if (max == -INFINITY) {
        if (!any_nan(vis, len))
            return empty_row(row, n, m, inv_sum);
        max = NAN;  /* every visible logit NaN: the row is NaN */
    }
    /* The plain loop only when no term reaches the flush threshold, so that
     * both loops give the same bits. min − max is -Inf with masked keys and
     * NaN for an all-NaN row under GCC (flushing loop, exact); under clang's
     * reduction identities an all-NaN row gives +Inf and the plain loop,
     * whose exp2f(NaN) makes the row NaN just the same. */
    float sum = range.min - max > ATTN_EXP_FLUSH ? exp_and_sum(vis, len, max)
                                                 : exp_and_sum_flushed(vis, len, max);
    zero_outside(row, n, begin, end, m);
    /* The maximum's own term is exp(0) = 1, so a zero sum means no key was
     * visible after all: the identity of the max reduction is compiler's
     * choice (GCC -INFINITY, clang -FLT_MAX), so a row of -INFINITY can get
     * a finite "maximum" here. */
    if (sum == 0.0f)
        return empty_row(row, n, m, inv_sum);
    *inv_sum = 1.0f / sum;
    return max + logf(sum);
}

void attn_softmax_row_from_lse(float *row, int64_t n, const attn_row_mask *m, float lse)
{
    int64_t begin, end;
    visible_span(m, n, &begin, &end);
    if (lse == INFINITY || lse == -INFINITY) {
        float unused;
        empty_row(row, n, m, &unused);
        return;
    }
    apply_mask(row, begin, end, m);
    /* The same two loops as the forward, with the shift lse in place of
     * the maximum (lse >= max, so every term is at most 1). Their sums are
     * not needed. */
    int64_t len = end - begin;
    float *vis = len > 0 ? row + begin : row;  /* row may be NULL with no keys */
    row_range range = row_min_max(vis, len);
    if (range.min - lse > ATTN_EXP_FLUSH)
        (void)exp_and_sum(vis, len, lse);
    else
        (void)exp_and_sum_flushed(vis, len, lse);
    zero_outside(row, n, begin, end, m);
}
