/*
 * shape.c — overflow-checked size arithmetic. Sizes arrive as int64_t from
 * callers; every element and byte count is computed here before anything
 * is allocated or indexed, so that no product can wrap silently.
 */
#include <stdio.h>

#include "attn_internal.h"

bool attn_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

bool attn_tensor_elems(const int64_t *dims, int n, size_t elem_size, int64_t *elems)
{
    /* An empty tensor has no bytes, however large its other dimensions. */
    for (int i = 0; i < n; i++)
        if (dims[i] == 0) {
            *elems = 0;
            return true;
        }
    int64_t count = 1;
    for (int i = 0; i < n; i++)
        if (!attn_mul_i64(count, dims[i], &count))
            return false;
    size_t bytes;
    if (__builtin_mul_overflow((uint64_t)count, (uint64_t)elem_size, &bytes))
        return false;
    *elems = count;
    return true;
}

attn_status attn_check_min(const int64_t *values, const char *const *names, int n, int64_t min,
                           const char *func)
{
    for (int i = 0; i < n; i++)
        if (values[i] < min)
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "%s (%lld) is %s", names[i],
                             (long long)values[i], min == 0 ? "negative" : "below 1");
    return ATTN_OK;
}

attn_status attn_check_data(const void *p, int64_t elems, const char *name, const char *func)
{
    if (!p && elems > 0)
        return attn_fail(ATTN_ERR_NULL_POINTER, func, "%s is NULL", name);
    return ATTN_OK;
}

attn_status attn_check_tensor(const int64_t *dims, int n, const char *name, const char *func)
{
    int64_t elems;
    if (attn_tensor_elems(dims, n, sizeof(float), &elems))
        return ATTN_OK;
    char shape[160];
    int used = 0;
    for (int i = 0; i < n && used < (int)sizeof shape; i++)
        used += snprintf(shape + used, sizeof shape - (size_t)used, "%s%lld", i ? "×" : "",
                         (long long)dims[i]);
    return attn_fail(ATTN_ERR_SIZE_OVERFLOW, func, "%s of %s floats does not fit in memory",
                     name, shape);
}

attn_status attn_check_blas(int64_t value, const char *name, const char *func)
{
    if (value <= ATTN_BLAS_INT_MAX)
        return ATTN_OK;
    return attn_fail(ATTN_ERR_UNSUPPORTED, func, "%s (%lld) exceeds the BLAS integer range (%lld)",
                     name, (long long)value, ATTN_BLAS_INT_MAX);
}

attn_status attn_check_causal(attn_causal causal, const char *func)
{
    if (causal == ATTN_CAUSAL_NONE || causal == ATTN_CAUSAL_TOP_LEFT ||
        causal == ATTN_CAUSAL_BOTTOM_RIGHT)
        return ATTN_OK;
    return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "causal (%d) is not an attn_causal",
                     (int)causal);
}

static size_t buffer_bytes(const attn_buffer *b)
{
    return b->rows * b->cols * sizeof(float);
}

attn_status attn_check_outputs_disjoint(const attn_buffer *out, int n_out, int n_shared,
                                        const attn_buffer *in, int n_in, const char *func)
{
    for (int i = 0; i < n_out; i++) {
        size_t bytes = buffer_bytes(&out[i]);
        for (int j = 0; j < n_in; j++)
            if (attn_ranges_overlap(out[i].p, bytes, in[j].p, buffer_bytes(&in[j])))
                return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "%s overlaps %s", out[i].name,
                                 in[j].name);
        for (int j = 0; j < i; j++) {
            bool shared = i < n_shared && out[i].p == out[j].p && out[i].rows == out[j].rows &&
                          out[i].cols == out[j].cols;
            if (!shared && attn_ranges_overlap(out[i].p, bytes, out[j].p, buffer_bytes(&out[j])))
                return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "%s overlaps %s%s",
                                 out[i].name, out[j].name,
                                 i < n_shared ? " (only outputs of the same shape may be the "
                                                "same buffer)" : "");
        }
    }
    return ATTN_OK;
}

bool attn_ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes)
{
    if (!a || !b || a_bytes == 0 || b_bytes == 0)
        return false;
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}
