/*
 * alloc.c — the library's only allocator. Everything libattn allocates goes
 * through here, so that failures can be injected in one place (tests) and
 * every buffer is aligned for the widest vector loads (64 bytes: AVX-512).
 */
#include <stdlib.h>

#include "attn_internal.h"

#define ATTN_ALIGNMENT 64

void *attn_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;  /* a valid, freeable pointer for empty buffers */
    /* aligned_alloc wants a multiple of the alignment. */
    if (bytes > SIZE_MAX - (ATTN_ALIGNMENT - 1))
        return NULL;
    size_t rounded = (bytes + ATTN_ALIGNMENT - 1) & ~(size_t)(ATTN_ALIGNMENT - 1);
    return aligned_alloc(ATTN_ALIGNMENT, rounded);
}

void attn_free(void *p)
{
    free(p);
}
