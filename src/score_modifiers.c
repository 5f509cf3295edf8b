/*
 * score_modifiers.c — what may change a logit besides the masks: a sliding
 * window (left, right) around the aligned diagonal (FlashAttention's
 * window_size, ONNX Attention-25), a logit softcap s = cap·tanh(s/cap)
 * (Gemma 2) and ALiBi biases −slope_h·|p − j| (Press, Smith and Lewis 2022,
 * "Train Short, Test Long", §3). This file keeps their settings, checks
 * them and makes the default slopes; the one place they are applied to a
 * row is attend.c's row mask, which softmax.c executes.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

attn_score_mods attn_score_mods_none(void)
{
    return (attn_score_mods){.window_left = -1, .window_right = -1, .softcap = 0.0f,
                             .alibi = NULL};
}

bool attn_score_mods_active(const attn_score_mods *m)
{
    return m->window_left >= 0 || m->window_right >= 0 || m->softcap > 0.0f || m->alibi;
}

attn_status attn_score_mods_set_window(attn_score_mods *m, int64_t left, int64_t right,
                                       const char *f)
{
    if (left < -1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "left (%lld) is below -1 (-1 = unbounded)", (long long)left);
    if (right < -1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "right (%lld) is below -1 (-1 = unbounded)", (long long)right);
    m->window_left = left;
    m->window_right = right;
    return ATTN_OK;
}

attn_status attn_score_mods_set_softcap(attn_score_mods *m, float cap, const char *f)
{
    if (!(cap >= 0.0f) || !isfinite(cap))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "cap (%g) is not a finite value >= 0 (0 = off)", (double)cap);
    m->softcap = cap;
    return ATTN_OK;
}

/* The slopes of ofirpress/attention_with_linear_biases' get_slopes(n): for
 * n a power of two, 2^(−8(h+1)/n); otherwise the c = 2^⌊log2 n⌋ slopes of
 * get_slopes(c), then every other slope of get_slopes(2c) from the first,
 * 2^(−8(2k+1)/(2c)), until there are n. In double, rounded once. */
void attn_alibi_default_slopes(int64_t heads, float *slopes)
{
    int64_t c = 1;
    while (c * 2 <= heads)
        c *= 2;
    for (int64_t h = 0; h < heads && h < c; h++)
        slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)c);
    for (int64_t k = 0; c + k < heads; k++)
        slopes[c + k] = (float)exp2(-8.0 * (double)(2 * k + 1) / (double)(2 * c));
}

attn_status attn_score_mods_set_alibi(attn_score_mods *m, int64_t heads, const float *slopes,
                                      const char *f)
{
    if (slopes)
        for (int64_t h = 0; h < heads; h++)
            if (!isfinite(slopes[h]))
                return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "slopes[%lld] (%g) is not finite",
                                 (long long)h, (double)slopes[h]);
    float *copy = m->alibi;
    if (!copy && !(copy = attn_alloc((size_t)heads * sizeof *copy)))
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate %lld slopes",
                         (long long)heads);
    if (slopes)
        memcpy(copy, slopes, (size_t)heads * sizeof *copy);
    else
        attn_alibi_default_slopes(heads, copy);
    m->alibi = copy;
    return ATTN_OK;
}

void attn_score_mods_clear_alibi(attn_score_mods *m)
{
    attn_free(m->alibi);
    m->alibi = NULL;
}
