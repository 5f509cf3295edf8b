/*
 * test_util.c — the tests' PRNG, float64 SDPA reference and tolerance
 * comparison (see test_util.h). Depends on libm only; the reference is
 * written from the formula in attn.h, independently of src/.
 */
#include "test_util.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG ------------------------------------------------------------ */

void tu_rng_seed(tu_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t tu_rng_next(tu_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *rng)
{
    return (double)(tu_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 */
}

double tu_normal(tu_rng *rng)
{
    double u1 = tu_uniform(rng), u2 = tu_uniform(rng);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t tu_randint(tu_rng *rng, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1u;
    return lo + (int64_t)(tu_rng_next(rng) % span);
}

void tu_fill_uniform(tu_rng *rng, float *dst, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)(lo + (hi - lo) * tu_uniform(rng));
}

void tu_fill_normal(tu_rng *rng, float *dst, size_t n, float mean, float stddev)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)(mean + stddev * tu_normal(rng));
}

void tu_fill_nan(float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = NAN;
}

/* ---- reference SDPA ---------------------------------------------------- */

int64_t ref_index(int layout, int64_t heads, int64_t len, int64_t dim, int64_t b, int64_t h,
                  int64_t s, int64_t d)
{
    if (layout == REF_BSHD)
        return ((b * len + s) * heads + h) * dim + d;
    return ((b * heads + h) * len + s) * dim + d;
}

int64_t ref_aligned_position(int causal, int64_t i, int64_t len_q, int64_t len_kv)
{
    return causal == REF_CAUSAL_TOP_LEFT ? i : i + len_kv - len_q;
}

int ref_window_visible(const ref_mods *m, int64_t p, int64_t j)
{
    if (!m || !m->window)
        return 1;
    if (m->left >= 0 && j < p - m->left)
        return 0;
    if (m->right >= 0 && j > p + m->right)
        return 0;
    return 1;
}

double ref_modified_logit(const ref_mods *m, int64_t h, int64_t p, int64_t j, double s,
                          double bias, double *cap_factor)
{
    if (cap_factor)
        *cap_factor = 1.0;
    if (m && m->softcap > 0.0) {
        double t = tanh(s / m->softcap);
        s = m->softcap * t;
        if (cap_factor)
            *cap_factor = 1.0 - t * t;
    }
    s += bias;
    if (m && m->alibi)
        s -= (double)m->alibi[h] * fabs((double)(p - j));
    return s;
}

void ref_rope_inv_freq(double base, int64_t rotary_dim, double *inv_freq)
{
    for (int64_t i = 0; i < rotary_dim / 2; i++)
        inv_freq[i] = 1.0 / pow(base, (double)(2 * i) / (double)rotary_dim);
}

void ref_rope_row(double *x, int style, int64_t rotary_dim, const double *inv_freq, double pos,
                  int inverse)
{
    int64_t half = rotary_dim / 2;
    double *y = malloc((size_t)rotary_dim * sizeof *y);
    if (!y)
        abort();
    if (style == 0) {
        for (int64_t d = 0; d < rotary_dim; d++) {
            double theta = pos * inv_freq[d % half] * (inverse ? -1.0 : 1.0);
            double rot = d < half ? -x[d + half] : x[d - half];  /* rotate_half */
            y[d] = x[d] * cos(theta) + rot * sin(theta);
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            double theta = pos * inv_freq[i] * (inverse ? -1.0 : 1.0);
            double complex z = (x[2 * i] + I * x[2 * i + 1]) * cexp(I * theta);
            y[2 * i] = creal(z);
            y[2 * i + 1] = cimag(z);
        }
    }
    memcpy(x, y, (size_t)rotary_dim * sizeof *y);
    free(y);
}

/* Offset of (b, h, i, 0) in a broadcast [mb, mh, mq, len_kv] mask array. */
static int64_t mask_row(int64_t mb, int64_t mh, int64_t mq, int64_t len_kv, int64_t b,
                        int64_t h, int64_t i)
{
    int64_t bb = mb == 1 ? 0 : b, hh = mh == 1 ? 0 : h, ii = mq == 1 ? 0 : i;
    return ((bb * mh + hh) * mq + ii) * len_kv;
}

/* The number of leading keys query i may see by position and valid length;
 * keys at or beyond it are never read. */
static int64_t key_limit(const ref_shape *s, const ref_mask *m, int64_t b, int64_t i)
{
    int64_t lim = s->len_kv;
    if (s->causal == REF_CAUSAL_TOP_LEFT)
        lim = i + 1;
    else if (s->causal == REF_CAUSAL_BOTTOM_RIGHT)
        lim = i + s->len_kv - s->len_q + 1;
    if (m && m->lengths) {
        int64_t len = m->per_query ? m->lengths[b * s->len_q + i] : m->lengths[b];
        if (len < lim)
            lim = len;
    }
    if (lim > s->len_kv)
        lim = s->len_kv;
    return lim < 0 ? 0 : lim;
}

/* One query row (b, h, i): fills logit[j] (scaled, biased) and vis[j] for
 * j < lim and returns the number of visible keys. */
static int64_t row_logits(const ref_shape *s, const float *q, const float *k,
                          const ref_mask *m, int64_t b, int64_t h, int64_t g, int64_t i,
                          int64_t lim, double *logit, unsigned char *vis)
{
    int64_t nvis = 0;
    const uint8_t *keep = NULL;
    const float *bias = NULL;
    if (m && m->keep)
        keep = m->keep + mask_row(m->keep_b, m->keep_h, m->keep_q, s->len_kv, b, h, i);
    if (m && m->bias)
        bias = m->bias + mask_row(m->bias_b, m->bias_h, m->bias_q, s->len_kv, b, h, i);
    int64_t p = ref_aligned_position(s->causal, i, s->len_q, s->len_kv);
    for (int64_t j = 0; j < lim; j++) {
        vis[j] = 0;
        if (keep && keep[j] == 0)
            continue;
        if (bias && bias[j] == -INFINITY)
            continue;
        if (!ref_window_visible(s->mods, p, j))
            continue;
        double dot = 0.0;
        for (int64_t d = 0; d < s->dim_qk; d++) {
            double qv = q[ref_index(s->layout, s->heads_q, s->len_q, s->dim_qk, b, h, i, d)];
            double kv = k[ref_index(s->layout, s->heads_kv, s->len_kv, s->dim_qk, b, g, j, d)];
            dot += qv * kv;
        }
        logit[j] = ref_modified_logit(s->mods, h, p, j, s->scale * dot,
                                      bias ? (double)bias[j] : 0.0, NULL);
        vis[j] = 1;
        nvis++;
    }
    return nvis;
}

int ref_sdpa(const ref_shape *s, const float *q, const float *k, const float *v,
             const ref_mask *mask, double *out, double *weights, double *lse)
{
    int64_t Lkv = s->len_kv, group = s->heads_q / s->heads_kv;
    /* One row of scratch (VLAs are optional in C11). */
    double *logit = malloc((size_t)(Lkv > 0 ? Lkv : 1) * sizeof *logit);
    unsigned char *vis = malloc((size_t)(Lkv > 0 ? Lkv : 1));
    if (!logit || !vis) {
        free(logit);
        free(vis);
        return -1;
    }

    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t i = 0; i < s->len_q; i++) {
                int64_t g = h / group;
                int64_t lim = key_limit(s, mask, b, i);
                int64_t nvis = row_logits(s, q, k, mask, b, h, g, i, lim, logit, vis);
                double *w = weights ? weights + ((b * s->heads_q + h) * s->len_q + i) * Lkv
                                    : NULL;
                double m = -INFINITY, sum = 0.0;
                int has_nan = 0;
                for (int64_t j = 0; j < lim; j++)
                    if (vis[j]) {
                        if (isnan(logit[j]))
                            has_nan = 1;
                        else if (logit[j] > m)
                            m = logit[j];
                    }
                if (has_nan)
                    m = NAN;
                for (int64_t j = 0; j < lim; j++)
                    if (vis[j]) {
                        logit[j] = exp(logit[j] - m); /* now the unnormalized weight */
                        sum += logit[j];
                    }
                if (w)
                    for (int64_t j = 0; j < Lkv; j++)
                        w[j] = (j < lim && vis[j] && nvis > 0) ? logit[j] / sum : 0.0;
                if (lse)
                    lse[(b * s->heads_q + h) * s->len_q + i] =
                        nvis > 0 ? m + log(sum) : -INFINITY;
                for (int64_t d = 0; d < s->dim_v; d++) {
                    double acc = 0.0;
                    if (nvis > 0)
                        for (int64_t j = 0; j < lim; j++)
                            if (vis[j])
                                acc += (logit[j] / sum) *
                                       v[ref_index(s->layout, s->heads_kv, Lkv, s->dim_v, b, g,
                                                   j, d)];
                    out[ref_index(s->layout, s->heads_q, s->len_q, s->dim_v, b, h, i, d)] = acc;
                }
            }
    free(logit);
    free(vis);
    return 0;
}

/* ---- comparison ---------------------------------------------------------- */

/* The error of one element given its normalizer; non-finite rules of the
 * header. */
/* One (b, h, i) row of ref_sdpa_backward; w is the row's weights. With
 * magnitudes set, every product and difference is taken in absolute value
 * (|x·y| for x·y, |x| + |y| for x − y): the sums then bound how large the
 * terms whose rounding errors add up are. */
static void ref_backward_row(const ref_shape *s, const float *q, const float *k, const float *v,
                             const float *d_out, const double *w, int64_t b, int64_t h,
                             int64_t i, int magnitudes, double *dp, double *d_q, double *d_k,
                             double *d_v)
{
    int64_t g = h / (s->heads_q / s->heads_kv);
    const float *dout = d_out + ref_index(s->layout, s->heads_q, s->len_q, s->dim_v, b, h, i, 0);
    double dsum = 0.0;
    for (int64_t j = 0; j < s->len_kv; j++) {
        dp[j] = 0.0;
        if (w[j] == 0.0)
            continue;
        for (int64_t c = 0; c < s->dim_v; c++) {
            double t = (double)dout[c] *
                       v[ref_index(s->layout, s->heads_kv, s->len_kv, s->dim_v, b, g, j, c)];
            dp[j] += magnitudes ? fabs(t) : t;
        }
        dsum += w[j] * dp[j];
    }
    int64_t p = ref_aligned_position(s->causal, i, s->len_q, s->len_kv);
    for (int64_t j = 0; j < s->len_kv; j++) {
        if (w[j] == 0.0)
            continue;
        double ds = magnitudes ? w[j] * (dp[j] + dsum) : w[j] * (dp[j] - dsum);
        if (s->mods && s->mods->softcap > 0.0) {  /* the chain through the cap */
            double dot = 0.0, factor;
            for (int64_t c = 0; c < s->dim_qk; c++)
                dot += (double)q[ref_index(s->layout, s->heads_q, s->len_q, s->dim_qk, b, h, i,
                                           c)] *
                       k[ref_index(s->layout, s->heads_kv, s->len_kv, s->dim_qk, b, g, j, c)];
            ref_modified_logit(s->mods, h, p, j, s->scale * dot, 0.0, &factor);
            ds *= factor;
        }
        for (int64_t c = 0; c < s->dim_qk; c++) {
            int64_t qi = ref_index(s->layout, s->heads_q, s->len_q, s->dim_qk, b, h, i, c);
            int64_t kj = ref_index(s->layout, s->heads_kv, s->len_kv, s->dim_qk, b, g, j, c);
            double kv = k[kj], qv = q[qi];
            if (d_q)
                d_q[qi] += s->scale * ds * (magnitudes ? fabs(kv) : kv);
            if (d_k)
                d_k[kj] += s->scale * ds * (magnitudes ? fabs(qv) : qv);
        }
        if (d_v)
            for (int64_t c = 0; c < s->dim_v; c++)
                d_v[ref_index(s->layout, s->heads_kv, s->len_kv, s->dim_v, b, g, j, c)] +=
                    w[j] * (magnitudes ? fabs((double)dout[c]) : dout[c]);
    }
}

int ref_sdpa_backward(const ref_shape *s, const float *q, const float *k, const float *v,
                      const ref_mask *mask, const float *d_out, int magnitudes, double *d_q,
                      double *d_k, double *d_v)
{
    size_t nq = (size_t)(s->batch * s->heads_q * s->len_q);
    size_t nkv = (size_t)(s->batch * s->heads_kv * s->len_kv);
    double *w = malloc((nq * (size_t)s->len_kv + 1) * sizeof *w);
    double *out = malloc((nq * (size_t)s->dim_v + 1) * sizeof *out);
    double *dp = malloc(((size_t)s->len_kv + 1) * sizeof *dp);
    int rc = -1;
    if (!w || !out || !dp || ref_sdpa(s, q, k, v, mask, out, w, NULL) != 0)
        goto done;
    if (d_q)
        memset(d_q, 0, nq * (size_t)s->dim_qk * sizeof *d_q);
    if (d_k)
        memset(d_k, 0, nkv * (size_t)s->dim_qk * sizeof *d_k);
    if (d_v)
        memset(d_v, 0, nkv * (size_t)s->dim_v * sizeof *d_v);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t i = 0; i < s->len_q; i++)
                ref_backward_row(s, q, k, v, d_out,
                                 w + ((b * s->heads_q + h) * s->len_q + i) * s->len_kv, b, h, i,
                                 magnitudes, dp, d_q, d_k, d_v);
    rc = 0;
done:
    free(w);
    free(out);
    free(dp);
    return rc;
}

static double elem_err(float a, double r, double norm)
{
    double ad = (double)a;
    if (isnan(r))
        return isnan(ad) ? 0.0 : INFINITY;
    if (isnan(ad))
        return INFINITY;
    if (isinf(r) || isinf(ad))
        return ad == r ? 0.0 : INFINITY;
    double diff = fabs(ad - r);
    if (diff == 0.0)
        return 0.0;
    return norm > 0.0 ? diff / norm : INFINITY;
}

double tu_max_err(const float *actual, const double *ref, int64_t n, int64_t row_len,
                  int64_t *worst)
{
    double max = 0.0;
    int64_t at = n > 0 ? 0 : -1;
    if (row_len < 1)
        row_len = 1;
    for (int64_t r0 = 0; r0 < n; r0 += row_len) {
        int64_t r1 = r0 + row_len < n ? r0 + row_len : n;
        double rowmax = 0.0;
        for (int64_t x = r0; x < r1; x++)
            if (isfinite(ref[x]) && fabs(ref[x]) > rowmax)
                rowmax = fabs(ref[x]);
        for (int64_t x = r0; x < r1; x++) {
            double e = elem_err(actual[x], ref[x], fabs(ref[x]) + rowmax);
            if (e > max) {
                max = e;
                at = x;
            }
        }
    }
    if (worst)
        *worst = at;
    return max;
}

double tu_max_err_lse(const float *actual, const double *ref, int64_t n, int64_t *worst)
{
    double max = 0.0;
    int64_t at = n > 0 ? 0 : -1;
    for (int64_t x = 0; x < n; x++) {
        double e = elem_err(actual[x], ref[x], fabs(ref[x]) + 1.0);
        if (e > max) {
            max = e;
            at = x;
        }
    }
    if (worst)
        *worst = at;
    return max;
}

double tu_max_err_scaled(const float *actual, const double *ref, const double *magnitude,
                         int64_t n, int64_t row_len, int64_t *worst)
{
    double max_err = 0.0;
    if (worst)
        *worst = n > 0 ? 0 : -1;
    for (int64_t r0 = 0; r0 < n; r0 += row_len) {
        int64_t r1 = r0 + row_len < n ? r0 + row_len : n;
        double norm = 0.0;
        for (int64_t i = r0; i < r1; i++)
            norm = magnitude[i] > norm ? magnitude[i] : norm;
        for (int64_t i = r0; i < r1; i++) {
            double d = fabs((double)actual[i] - ref[i]);
            double err = isnan(d) ? INFINITY : d == 0.0 ? 0.0 : norm > 0.0 ? d / norm : INFINITY;
            if (err > max_err) {
                max_err = err;
                if (worst)
                    *worst = i;
            }
        }
    }
    return max_err;
}

double tu_central_difference(float *x, double h, double (*loss)(void *arg), void *arg)
{
    float x0 = *x;
    double l0 = loss(arg);
    *x = (float)((double)x0 + h);
    double hp = (double)*x - x0, lp = loss(arg);
    *x = (float)((double)x0 - h);
    double hm = x0 - (double)*x, lm = loss(arg);
    *x = x0;
    return (hm * hm * (lp - l0) + hp * hp * (l0 - lm)) / (hp * hm * (hp + hm));
}

int64_t tu_count_nonfinite(const float *x, int64_t n)
{
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            c++;
    return c;
}

int tu_under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload") != NULL;
}
