/*
 * fuzz_ref.c — the fuzzer's float64 attention row with error bounds (see
 * fuzz_ref.h). Written from attn.h's formula, independently of src/.
 */
#include "fuzz_ref.h"

#include <math.h>

fr_kind fr_softmax(int64_t n, const double *l, const double *le, const unsigned char *vis,
                   double *w, unsigned char *sup, double *rel, double *lse, double *lse_tol)
{
    double m = -INFINITY, eps = 0.0;
    int any = 0, nan = 0;
    for (int64_t j = 0; j < n; j++) {
        sup[j] = 0;
        if (!vis[j])
            continue;
        if (isnan(l[j]) || l[j] == INFINITY)
            nan = 1;
        else if (l[j] != -INFINITY) { /* a logit of -Inf masks its key */
            any = 1;
            m = fmax(m, l[j]);
            eps = fmax(eps, le[j]);
        }
    }
    *rel = 0.0, *lse_tol = 0.0;
    if (nan) {
        for (int64_t j = 0; j < n; j++)
            w[j] = vis[j] && l[j] != -INFINITY ? NAN : 0.0;
        *lse = NAN;
        return FR_NAN;
    }
    if (!any) {
        for (int64_t j = 0; j < n; j++)
            w[j] = 0.0;
        *lse = -INFINITY;
        return FR_EMPTY;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        int live = vis[j] && l[j] != -INFINITY;
        w[j] = live ? exp(l[j] - m) : 0.0;
        sum += w[j];
        sup[j] = (unsigned char)(live && l[j] >= m - (2.0 * eps + 100.0));
    }
    for (int64_t j = 0; j < n; j++)
        w[j] /= sum;
    *lse = m + log(sum);
    *lse_tol = eps + FR_TOL * (fabs(*lse) + 1.0);
    *rel = FR_TOL + 2.0 * eps;
    if (*rel >= 1.0)
        *rel = INFINITY;
    return FR_FINITE;
}

void fr_pool(fr_kind kind, int64_t n, const double *w, const unsigned char *sup, double rel,
             const unsigned char *vis, const double *v, int64_t ld, int64_t dv, double *out,
             double *tol)
{
    for (int64_t d = 0; d < dv; d++) {
        if (kind != FR_FINITE) {
            out[d] = kind == FR_NAN ? NAN : 0.0;
            tol[d] = 0.0;
            continue;
        }
        double s = 0.0, mag = 0.0, lo = INFINITY, hi = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            if (!vis[j])
                continue;
            double x = v[j * ld + d];
            s += w[j] * x;
            mag += w[j] * fabs(x);
            if (sup[j])
                lo = fmin(lo, x), hi = fmax(hi, x);
        }
        out[d] = s;
        if (!isfinite(s)) {
            tol[d] = INFINITY;
            continue;
        }
        double hull = (hi - lo) + FR_TOL * mag;
        double t = mag == 0.0 ? 0.0 : (rel == INFINITY ? hull : fmin(rel * mag, hull));
        tol[d] = t + FR_FLOOR;
    }
}

int fr_accept(float x, double r, double tol)
{
    if (isnan(r))
        return isnan(x);
    if (isinf(r))
        return isnan(x) || (double)x == r;
    if (!isfinite(x))
        return 0;
    return fabs((double)x - r) <= tol;
}
