/*
 * mask.c — attn_mask: valid lengths (D2L §10.3.1), boolean keep-masks and
 * additive biases, each referencing the caller's array. Setters check what
 * can be checked alone; attn_mask_validate checks the rest against an op's
 * shapes at forward, before any output is written.
 */
#include "attn_internal.h"

attn_status attn_mask_create(attn_mask **mask)
{
    if (!mask)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mask is NULL");
    attn_mask *m = attn_alloc(sizeof *m);
    if (!m)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, __func__, "cannot allocate the mask");
    *m = (attn_mask){0};
    *mask = m;
    return ATTN_OK;
}

void attn_mask_destroy(attn_mask *mask)
{
    attn_free(mask);
}

attn_status attn_mask_clear(attn_mask *mask)
{
    if (!mask)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mask is NULL");
    *mask = (attn_mask){0};
    return ATTN_OK;
}

/* The first negative entry of lengths[0..n), or -1. */
static int64_t first_negative(const int64_t *lengths, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (lengths[i] < 0)
            return i;
    return -1;
}

attn_status attn_mask_set_kv_lengths(attn_mask *mask, const int64_t *lengths, int64_t batch,
                                     int64_t len_q, int per_query)
{
    static const char *f = "attn_mask_set_kv_lengths";
    if (!mask)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mask is NULL");
    if (per_query != 0 && per_query != 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "per_query (%d) is not 0 or 1", per_query);
    if (batch < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "batch (%lld) is negative",
                         (long long)batch);
    if (per_query && len_q < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "len_q (%lld) is negative",
                         (long long)len_q);
    int64_t dims[2] = {batch, per_query ? len_q : 1}, n;
    if (!attn_tensor_elems(dims, 2, sizeof(int64_t), &n))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "batch × len_q overflows");
    if (!lengths && n > 0)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "lengths is NULL");
    int64_t bad = first_negative(lengths, n);
    if (bad >= 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "lengths[%lld] (%lld) is negative",
                         (long long)bad, (long long)lengths[bad]);
    mask->has_lengths = true;
    mask->lengths = lengths;
    mask->lengths_batch = batch;
    mask->lengths_len_q = per_query ? len_q : 0;
    mask->per_query = per_query;
    return ATTN_OK;
}

/* Shared by the bool and bias setters: same shape rules. */
static attn_status set_array(attn_mask_array *dst, const char *f, const char *what,
                             const void *data, size_t elem_size, int64_t mb, int64_t mh,
                             int64_t mq, int64_t len_kv)
{
    const int64_t dims[4] = {mb, mh, mq, len_kv};
    static const char *names[4] = {"mb", "mh", "mq", "len_kv"};
    for (int i = 0; i < 3; i++)
        if (dims[i] < 1)
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "%s (%lld) is below 1", names[i],
                             (long long)dims[i]);
    if (len_kv < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "len_kv (%lld) is negative",
                         (long long)len_kv);
    int64_t n;
    if (!attn_tensor_elems(dims, 4, elem_size, &n))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "%s of %lld×%lld×%lld×%lld overflows", what,
                         (long long)mb, (long long)mh, (long long)mq, (long long)len_kv);
    if (!data && n > 0)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "%s is NULL", what);
    *dst = (attn_mask_array){.set = true, .data = data,
                             .mb = mb, .mh = mh, .mq = mq, .len_kv = len_kv};
    return ATTN_OK;
}

attn_status attn_mask_set_bool(attn_mask *mask, const uint8_t *keep, int64_t mb, int64_t mh,
                               int64_t mq, int64_t len_kv)
{
    if (!mask)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mask is NULL");
    return set_array(&mask->keep, __func__, "keep", keep, sizeof *keep, mb, mh, mq, len_kv);
}

attn_status attn_mask_set_bias(attn_mask *mask, const float *bias, int64_t mb, int64_t mh,
                               int64_t mq, int64_t len_kv)
{
    if (!mask)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mask is NULL");
    return set_array(&mask->bias, __func__, "bias", bias, sizeof *bias, mb, mh, mq, len_kv);
}

static attn_status check_dim(const char *func, const char *kind, const char *name,
                             int64_t got, int64_t want, bool broadcast)
{
    if (got == want || (broadcast && got == 1))
        return ATTN_OK;
    return attn_fail(ATTN_ERR_SHAPE_MISMATCH, func, "%s mask %s (%lld) is not %s%lld", kind,
                     name, (long long)got, broadcast ? "1 or " : "", (long long)want);
}

static attn_status validate_array(const attn_mask_array *a, const char *kind,
                                  const attn_mask_dims *d, const char *func)
{
    attn_status st;
    if (!a->set)
        return ATTN_OK;
    if ((st = check_dim(func, kind, "batch", a->mb, d->batch, true)) != ATTN_OK ||
        (st = check_dim(func, kind, "heads", a->mh, d->heads, true)) != ATTN_OK ||
        (st = check_dim(func, kind, "len_q", a->mq, d->len_q, true)) != ATTN_OK ||
        (st = check_dim(func, kind, "len_kv", a->len_kv, d->len_kv, false)) != ATTN_OK)
        return st;
    return ATTN_OK;
}

/* The mask references caller memory, so the values are checked again here:
 * they may have changed since attn_mask_set_kv_lengths. */
static attn_status validate_lengths(const attn_mask *m, const attn_mask_dims *d,
                                    const char *func)
{
    attn_status st;
    if (!m->has_lengths)
        return ATTN_OK;
    if ((st = check_dim(func, "lengths", "batch", m->lengths_batch, d->batch, false)) != ATTN_OK)
        return st;
    if (m->per_query &&
        (st = check_dim(func, "lengths", "len_q", m->lengths_len_q, d->len_q, false)) != ATTN_OK)
        return st;
    int64_t n = m->lengths_batch * (m->per_query ? m->lengths_len_q : 1);
    for (int64_t i = 0; i < n; i++)
        if (m->lengths[i] < 0 || m->lengths[i] > d->len_kv)
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func,
                             "valid length %lld (index %lld) is outside [0, len_kv = %lld]",
                             (long long)m->lengths[i], (long long)i, (long long)d->len_kv);
    return ATTN_OK;
}

attn_status attn_mask_validate(const attn_mask *mask, const attn_mask_dims *dims,
                               const char *func)
{
    attn_status st;
    if (!mask)
        return ATTN_OK;
    if ((st = validate_lengths(mask, dims, func)) != ATTN_OK ||
        (st = validate_array(&mask->keep, "bool", dims, func)) != ATTN_OK ||
        (st = validate_array(&mask->bias, "bias", dims, func)) != ATTN_OK)
        return st;
    return ATTN_OK;
}

const void *attn_mask_row(const attn_mask_array *a, int64_t b, int64_t h, int64_t i,
                          size_t elem_size)
{
    if (!a->set || a->len_kv == 0)
        return NULL;
    int64_t bb = a->mb == 1 ? 0 : b;
    int64_t hh = a->mh == 1 ? 0 : h;
    int64_t ii = a->mq == 1 ? 0 : i;
    size_t row = (size_t)((bb * a->mh + hh) * a->mq + ii);
    return (const char *)a->data + row * (size_t)a->len_kv * elem_size;
}

int64_t attn_mask_batch_limit(const attn_mask *mask, int64_t b, int64_t len_kv)
{
    if (!mask || !mask->has_lengths || mask->per_query)
        return len_kv;
    return mask->lengths[b];
}

int64_t attn_mask_kv_limit(const attn_mask *mask, int64_t b, int64_t i, int64_t len_kv)
{
    if (!mask || !mask->has_lengths)
        return len_kv;
    if (!mask->per_query)
        return mask->lengths[b];
    return mask->lengths[b * mask->lengths_len_q + i];
}
