/*
 * lm_sample.c — greedy, temperature, top-k and top-p choice of the next
 * token (see lm_sample.h).
 */
#include <math.h>
#include <stdlib.h>

#include "lm_sample.h"

static int by_probability_desc(const void *a, const void *b)
{
    const double *x = a, *y = b;  /* pairs (probability, token) */
    if (x[0] != y[0])
        return x[0] < y[0] ? 1 : -1;
    return (x[1] > y[1]) - (x[1] < y[1]);  /* ties: the lower token first (reproducible) */
}

int lm_sample(const float *logits, int64_t vocab, int64_t first, const lm_sampling *s, prng *g,
              double *scratch)
{
    int64_t best = first;
    for (int64_t t = first + 1; t < vocab; t++)
        best = logits[t] > logits[best] ? t : best;
    if (s->greedy)
        return (int)best;
    /* Softmax at the temperature, unnormalised, as (probability, token)
     * pairs. */
    int64_t n = vocab - first;
    for (int64_t k = 0; k < n; k++) {
        double p = exp(((double)logits[first + k] - logits[best]) / s->temperature);
        scratch[2 * k] = p, scratch[2 * k + 1] = (double)(first + k);
    }
    qsort(scratch, (size_t)n, 2 * sizeof *scratch, by_probability_desc);
    int64_t keep = s->top_k > 0 && s->top_k < n ? s->top_k : n;
    /* The nucleus: the fewest tokens whose probability, renormalised over
     * the top k, reaches top_p. */
    double kept = 0.0;
    for (int64_t k = 0; k < keep; k++)
        kept += scratch[2 * k];
    if (s->top_p < 1.0) {
        double acc = 0.0;
        for (int64_t k = 0; k < keep; k++) {
            acc += scratch[2 * k] / kept;
            if (acc >= s->top_p) {
                keep = k + 1;
                break;
            }
        }
        kept = 0.0;
        for (int64_t k = 0; k < keep; k++)
            kept += scratch[2 * k];
    }
    double u = prng_uniform(g) * kept, acc = 0.0;
    for (int64_t k = 0; k < keep; k++) {
        acc += scratch[2 * k];
        if (u < acc)
            return (int)scratch[2 * k + 1];
    }
    return (int)scratch[2 * (keep - 1) + 1];
}
