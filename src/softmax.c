/*
 * softmax.c — the masked, numerically safe softmax of one row of logits.
 *
 * Two passes over a row that is already scale·q·kᵀ (the GEMM applied the
 * scale): (1) mask and bias, then the maximum; (2) exp(x − max) and the sum.
 * The division by the sum is left to the caller, who applies it to the
 * row's dim_v outputs of P·V rather than to its len_kv probabilities. Subtracting the
 * maximum keeps exp in range for any logits (D2L §4.4 "softmax revisited";
 * Milakov & Gimelshein 2018); the log-sum-exp follows as max + log(sum).
 *
 * Speed: the exp of pass 2 dominates. glibc's libmvec provides vector expf
 * (_ZGVeN16v_expf for AVX-512, _ZGVdN8v_expf for AVX2, ≤ 4 ulp); declaring
 * expf "omp declare simd" lets GCC call them from `#pragma omp simd` loops,
 * and target_clones builds each hot loop for AVX-512, AVX2 and the baseline,
 * picked once at load time by the CPU. glibc's own <math.h> makes that
 * declaration only under -ffast-math, which would also assume away the
 * -INFINITY and NaN this file must handle exactly, so it is made here.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

#pragma omp declare simd notinbranch
float expf(float);

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ATTN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ATTN_VECTOR_CLONES
#endif

/* Pass 1a, over the keys before the row's visible end: keys the boolean
 * mask drops become -INFINITY, the bias is added. A -INFINITY bias masks the
 * key whatever its logit: NaN + -Inf would be NaN and leak a masked key's
 * NaN into the whole row. (Keys from the visible end on are not read at
 * all: attn_softmax_row zeroes them.) */
ATTN_VECTOR_CLONES
static void apply_mask(float *row, int64_t end, const attn_row_mask *m)
{
    const uint8_t *keep = m->keep;
    const float *bias = m->bias;
    if (keep) {
#pragma omp simd
        for (int64_t j = 0; j < end; j++)
            row[j] = keep[j] ? row[j] : -INFINITY;
    }
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < end; j++)
            row[j] = bias[j] == -INFINITY ? -INFINITY : row[j] + bias[j];
    }
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
 * Why: libmvec's vector expf hands every lane outside its fast range to the
 * scalar expf one by one, and exp(x − max) of far-apart logits is mostly
 * such lanes (measured: a third of the softmax time in the scalar fallback
 * for a multi-head layer with random weights). Against a sum >= 1 the
 * flushed terms are below float precision by 30 orders of magnitude. */
#define ATTN_EXP_FLUSH (-87.0f)

/* Pass 2: row[j] = exp(row[j] − max); returns the sum. The sum runs in
 * float over vector lanes: each term is in [0, 1] and at least one is 1, so
 * its relative rounding error stays near n·2⁻²⁴ / lanes. NaN stays NaN (the
 * comparisons are false for it).
 *
 * Rows whose logits span less than 87 (the usual case: scaled dot products
 * of normalised activations) take the plain loop. Wider rows first clamp
 * their far terms in a loop of its own: written inside the exp loop as
 * `x < F ? 0 : expf(x < F ? F : x)`, GCC proves the clamped lanes' result
 * unused and calls expf on the unclamped x, which brings back the slow
 * lanes. */
ATTN_VECTOR_CLONES
static float exp_and_sum(float *row, int64_t n, float max)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float e = expf(row[j] - max);
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
        float e = x == ATTN_EXP_FLUSH ? 0.0f : expf(x);
        row[j] = e;
        sum += e;
    }
    return sum;
}

/* A row with no visible key: zeros, 1/sum 0, lse -INFINITY. */
static float empty_row(float *row, int64_t n, float *inv_sum)
{
    if (n > 0)  /* row may be NULL then: no scratch for zero keys */
        memset(row, 0, (size_t)n * sizeof *row);
    *inv_sum = 0.0f;
    return -INFINITY;
}

float attn_softmax_row(float *row, int64_t n, const attn_row_mask *m, float *inv_sum)
{
    /* Keys from the visible end on (valid length, causal limit) get weight
     * 0 without being looked at: their logits may be NaN. */
    int64_t end = m->visible_end < n ? m->visible_end : n;
    if (end < 0)
        end = 0;
    apply_mask(row, end, m);
    row_range range = row_min_max(row, end);
    float max = range.max;
    if (max == -INFINITY) {
        if (!any_nan(row, end))
            return empty_row(row, n, inv_sum);
        max = NAN;  /* every visible logit NaN: the row is NaN */
    }
    /* The plain loop only when no term reaches the flush threshold, so that
     * both loops give the same bits. min − max is -Inf with masked keys and
     * NaN for an all-NaN row under GCC (flushing loop, exact); under clang's
     * reduction identities an all-NaN row gives +Inf and the plain loop,
     * whose expf(NaN) makes the row NaN just the same. */
    float sum = range.min - max > ATTN_EXP_FLUSH ? exp_and_sum(row, end, max)
                                                 : exp_and_sum_flushed(row, end, max);
    if (end < n)
        memset(row + end, 0, (size_t)(n - end) * sizeof *row);
    /* The maximum's own term is exp(0) = 1, so a zero sum means no key was
     * visible after all: the identity of the max reduction is compiler's
     * choice (GCC -INFINITY, clang -FLT_MAX), so a row of -INFINITY can get
     * a finite "maximum" here. */
    if (sum == 0.0f)
        return empty_row(row, n, inv_sum);
    *inv_sum = 1.0f / sum;
    return max + logf(sum);
}
