/*
 * ring_rows.c — rows of a rank's local tensors: the second chunk's rows
 * copied out (the queries a later rank's shard is visible to), partial
 * results added or merged back into them. O(rows × dim) per step, against
 * the step's O(rows × keys × dim) attention.
 */
#include <stdlib.h>
#include <string.h>

#include "ring_internal.h"

float *ring_floats(int64_t n)
{
    return malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
}

float *row_at(const ring_view *t, int64_t b, int64_t h, int64_t i)
{
    int64_t row = t->layout == ATTN_LAYOUT_BHSD ? (b * t->heads + h) * t->len + i
                                                : (b * t->len + i) * t->heads + h;
    return t->data + row * t->dim;
}

void rows_copy(const ring_view *src, int64_t first, const ring_view *dst)
{
    for (int64_t b = 0; b < dst->batch; b++)
        for (int64_t h = 0; h < dst->heads; h++)
            for (int64_t i = 0; i < dst->len; i++)
                memcpy(row_at(dst, b, h, i), row_at(src, b, h, first + i),
                       (size_t)dst->dim * sizeof(float));
}

void rows_add(const ring_view *dst, int64_t first, const ring_view *src)
{
    for (int64_t b = 0; b < src->batch; b++)
        for (int64_t h = 0; h < src->heads; h++)
            for (int64_t i = 0; i < src->len; i++) {
                float *d = row_at(dst, b, h, first + i);
                const float *s = row_at(src, b, h, i);
                for (int64_t c = 0; c < src->dim; c++)
                    d[c] += s[c];
            }
}

attn_status rows_merge(const ring_view *acc, float *acc_lse, int64_t first,
                       const ring_view *part, const float *part_lse)
{
    /* BHSD: the rows of one (b, h) are consecutive in out and in lse, one
     * call merges them; BSHD interleaves the heads, one call per row. */
    bool whole = acc->layout == ATTN_LAYOUT_BHSD;
    int64_t rows = whole ? part->len : 1, steps = whole ? 1 : part->len;
    for (int64_t b = 0; b < part->batch; b++)
        for (int64_t h = 0; h < part->heads; h++)
            for (int64_t i = 0; i < steps; i++) {
                float *o = row_at(acc, b, h, first + i);
                float *l = acc_lse + (b * acc->heads + h) * acc->len + first + i;
                const float *outs[2] = {o, row_at(part, b, h, i)};
                const float *lses[2] = {l, part_lse + (b * part->heads + h) * part->len + i};
                attn_status st = attn_merge_partials(2, rows, acc->dim, outs, lses, o, l);
                if (st != ATTN_OK)
                    return st;
            }
    return ATTN_OK;
}
