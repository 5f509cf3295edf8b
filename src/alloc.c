/*
 * alloc.c — the library's only allocator. Everything libattn allocates goes
 * through here, so that failures can be injected in one place (tests) and
 * every buffer is aligned for the widest vector loads (64 bytes: AVX-512).
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "attn_internal.h"

#define ATTN_ALIGNMENT 64

/* Failure injection and accounting, for tests/test_alloc_failure.c only.
 *
 * These are internal symbols: hidden visibility and `local: *` in attn.map
 * keep them out of libattn.so's dynamic symbol table, so no program linked
 * against the library can reach them, and nothing in the library writes
 * them: in the shipped library the countdown stays 0 and attn_alloc behaves
 * exactly as without it. The test links the library's object files directly
 * (tests/meson.build) and sets them.
 *
 *   attn_alloc_fail_countdown  0: never fail. n > 0: each attn_alloc counts
 *                              it down, and the call that brings it to 0
 *                              returns NULL (the n-th call from now).
 *   attn_alloc_fail_sticky     nonzero: once a call has failed, every later
 *                              call fails too (until the test resets it).
 *   attn_alloc_calls           attn_alloc calls so far (failed ones included).
 *   attn_alloc_live            blocks allocated and not yet freed: a call
 *                              that leaves it changed has leaked (or freed
 *                              what it did not own).
 *
 * Atomics, because forward calls on different contexts allocate from
 * different threads at once (tests/test_concurrency.c, under TSan). */
#define ATTN_HIDDEN __attribute__((visibility("hidden")))
ATTN_HIDDEN atomic_llong attn_alloc_fail_countdown;
ATTN_HIDDEN atomic_int attn_alloc_fail_sticky;
ATTN_HIDDEN atomic_llong attn_alloc_calls;
ATTN_HIDDEN atomic_llong attn_alloc_live;

/* True if this call is to fail. */
static bool injected_failure(void)
{
    atomic_fetch_add_explicit(&attn_alloc_calls, 1, memory_order_relaxed);
    long long left = atomic_load_explicit(&attn_alloc_fail_countdown, memory_order_relaxed);
    if (left <= 0)
        return false;
    if (left == 1 && atomic_load_explicit(&attn_alloc_fail_sticky, memory_order_relaxed))
        return true;  /* stays at 1: every call from now on fails */
    return atomic_fetch_sub_explicit(&attn_alloc_fail_countdown, 1, memory_order_relaxed) == 1;
}

void *attn_alloc(size_t bytes)
{
    if (injected_failure())
        return NULL;
    if (bytes == 0)
        bytes = 1;  /* a valid, freeable pointer for empty buffers */
    /* aligned_alloc wants a multiple of the alignment. */
    if (bytes > SIZE_MAX - (ATTN_ALIGNMENT - 1))
        return NULL;
    size_t rounded = (bytes + ATTN_ALIGNMENT - 1) & ~(size_t)(ATTN_ALIGNMENT - 1);
    void *p = aligned_alloc(ATTN_ALIGNMENT, rounded);
    if (p)
        atomic_fetch_add_explicit(&attn_alloc_live, 1, memory_order_relaxed);
    return p;
}

void attn_free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&attn_alloc_live, 1, memory_order_relaxed);
    free(p);
}
