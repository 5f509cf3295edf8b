/*
 * activations.c — attn_activations, what a layer's training forward keeps
 * for its backward (the tape of one forward/backward pair): a single
 * growable buffer cut into slots (inputs, projections, attention output,
 * lse), and which layer, at which parameter version, filled it, so that a
 * backward with another layer or changed parameters is refused instead of
 * computing wrong gradients.
 */
#include <stdatomic.h>
#include <string.h>

#include "attn_internal.h"

attn_status attn_activations_create(attn_activations **act)
{
    if (!act)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "act is NULL");
    attn_activations *a = attn_alloc(sizeof *a);
    if (!a)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, __func__, "cannot allocate the activations");
    *a = (attn_activations){0};
    *act = a;
    return ATTN_OK;
}

void attn_activations_destroy(attn_activations *act)
{
    if (!act)
        return;
    attn_activations_destroy(act->inner);
    attn_free(act->buf);
    attn_free(act);
}

/* Slots start on 64-byte boundaries, as attn_alloc's buffers do. */
static size_t round_up(size_t floats)
{
    return (floats + 15) / 16 * 16;
}

attn_status attn_activations_reserve(attn_activations *act, const size_t *floats, int n,
                                     const char *func)
{
    act->owner = NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t f = round_up(floats[i]);
        if (f < floats[i] || total + f < total || total + f > SIZE_MAX / sizeof(float))
            return attn_fail(ATTN_ERR_SIZE_OVERFLOW, func,
                             "the activations do not fit in memory");
        total += f;
    }
    if (total == 0)
        total = 16;  /* a real buffer even for empty tensors: no offsets from NULL */
    if (total > act->capacity) {
        float *buf = attn_alloc(total * sizeof(float));
        if (!buf)
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func,
                             "cannot allocate %zu bytes of activations", total * sizeof(float));
        attn_free(act->buf);
        act->buf = buf;
        act->capacity = total;
    }
    size_t at = 0;
    for (int i = 0; i < ATTN_ACT_SLOTS; i++) {
        act->slot[i] = i < n ? act->buf + at : NULL;
        if (i < n)
            at += round_up(floats[i]);
    }
    return ATTN_OK;
}

attn_status attn_activations_check_filled(const attn_activations *act, const void *owner,
                                          uint64_t version, const char *forward,
                                          const char *owner_noun, const char *changed,
                                          const char *func)
{
    if (!act)
        return attn_fail(ATTN_ERR_NULL_POINTER, func, "act is NULL");
    if (act->owner != owner)
        return attn_fail(ATTN_ERR_STATE, func,
                         "act holds no %s of this %s (empty, or filled by another layer)",
                         forward, owner_noun);
    if (act->version != version)
        return attn_fail(ATTN_ERR_STATE, func, "the %s changed after the %s that filled act",
                         changed, forward);
    return ATTN_OK;
}

attn_status attn_activations_inner(attn_activations *act, attn_activations **inner,
                                   const char *func)
{
    if (!act->inner) {
        attn_activations *a = attn_alloc(sizeof *a);
        if (!a)
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func, "cannot allocate the activations");
        *a = (attn_activations){0};
        act->inner = a;
    }
    *inner = act->inner;
    return ATTN_OK;
}

uint64_t attn_next_version(void)
{
    static atomic_uint_fast64_t counter = 0;
    return (uint64_t)atomic_fetch_add(&counter, 1) + 1;
}
