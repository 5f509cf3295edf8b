/*
 * lm_sample.h — choosing the next token from a language model's logits:
 * greedy (arg max), or a draw at a temperature from the top-k tokens and
 * the smallest set whose probability reaches top_p (nucleus sampling,
 * Holtzman et al. 2020), in the order Hugging Face's generate applies them
 * (temperature, then top-k, then top-p).
 */
#ifndef ATTN_TOOLS_LM_SAMPLE_H
#define ATTN_TOOLS_LM_SAMPLE_H

#include <stdint.h>

#include "prng.h"

typedef struct lm_sampling {
    int greedy;           /* arg max; the rest is ignored */
    double temperature;   /* > 0 */
    int64_t top_k;        /* 0: every token */
    double top_p;         /* in (0, 1]; 1: no nucleus cut */
} lm_sampling;

/* The next token from logits [vocab]; tokens below `first` (the unknown
 * token) are never chosen. scratch holds 2 · vocab doubles. */
int lm_sample(const float *logits, int64_t vocab, int64_t first, const lm_sampling *s, prng *g,
              double *scratch);

#endif
