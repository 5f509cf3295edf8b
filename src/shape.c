/*
 * shape.c — overflow-checked size arithmetic. Sizes arrive as int64_t from
 * callers; every element and byte count is computed here before anything
 * is allocated or indexed, so that no product can wrap silently.
 */
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
