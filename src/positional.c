/*
 * positional.c — the sinusoidal positional encoding of "Attention Is All You
 * Need" §3.5 (D2L §10.6.3). The angle pos / base^(2i/dim) is formed and
 * reduced in double precision: a float32 angle of 10^4 radians is already
 * off by ~5e-4, which would make the encoding of late positions noise.
 */
#include <math.h>

#include "attn_internal.h"

attn_status attn_positional_encoding(float *out, int64_t len, int64_t dim, int64_t start,
                                     float base)
{
    static const char *f = "attn_positional_encoding";
    if (len < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "len (%lld) is negative", (long long)len);
    if (dim < 2 || dim % 2 != 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "dim (%lld) is not a positive even number",
                         (long long)dim);
    if (start < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "start (%lld) is negative",
                         (long long)start);
    if (start > INT64_MAX - len)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "start + len overflows int64_t");
    if (!(isfinite(base) && base > 1.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "base (%g) is not finite and > 1",
                         (double)base);
    const int64_t dims[2] = {len, dim};
    attn_status st;
    if ((st = attn_check_tensor(dims, 2, "out", f)) != ATTN_OK ||
        (st = attn_check_data(out, len * dim, "out", f)) != ATTN_OK)
        return st;

    double log_base = log((double)base);
    for (int64_t p = 0; p < len; p++) {
        double pos = (double)(start + p);
        float *row = out + p * dim;
        for (int64_t i = 0; i < dim / 2; i++) {
            /* pos / base^(2i/dim) = pos · exp(−(2i/dim) · ln base) */
            double angle = pos * exp(-(double)(2 * i) / (double)dim * log_base);
            row[2 * i] = (float)sin(angle);
            row[2 * i + 1] = (float)cos(angle);
        }
    }
    return ATTN_OK;
}
