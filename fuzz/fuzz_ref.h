/*
 * fuzz_ref.h — the float64 reference of fuzz_api.c, with error bounds.
 *
 * The fuzzer compares libattn with a reference that computes in double. The
 * two may differ by float32 rounding, and on fuzzed inputs that difference
 * can be large (logits of 1e30, cancellation to exactly 0), so each
 * reference value carries a bound on how far a correct float32 result may be
 * from it, in the manner of a running error analysis (Higham, "Accuracy and
 * Stability of Numerical Algorithms", §3.1):
 *
 *  - a logit l_j = scale·q·k_j + bias_j computed in float32 is off by at most
 *    γ·(|scale|·Σ|q_d k_d| + |bias_j|), γ = (terms + 4)·2⁻²⁴ (the caller
 *    passes this absolute error per key);
 *  - softmax is 2-Lipschitz in the max-norm of its logits for relative
 *    weight errors, so with ε = max_j err(l_j): |Δw_j| ≤ (TOL + 2ε)·w_j;
 *  - out_d = Σ_j w_j v_jd: |Δout_d| ≤ (TOL + 2ε)·Σ_j w_j |v_jd|, and since
 *    out is a convex combination, never more than the spread of the v_jd
 *    (the bound used when ε is large: logits of 1e30 give ε ~ 1e23);
 *  - lse: |Δlse| ≤ ε + TOL·(|lse| + 1);
 *  - weights below e⁻⁸⁷ may be flushed to 0 by libattn (src/softmax.c): an
 *    absolute allowance of 1e-30 per weight and per output covers them.
 * TOL = 1e-4 covers expf (≤ 4 ulp), the float sums, and the scale's rounding.
 *
 * Non-finite values follow attn.h: a NaN or +Inf logit makes the row NaN; a
 * logit of −Inf (from a −INFINITY bias or from the data) masks its key; a row
 * with no visible key is zeros with lse −Inf.
 */
#ifndef FUZZ_REF_H
#define FUZZ_REF_H

#include <stdint.h>

#define FR_TOL 1e-4
#define FR_FLOOR 1e-30

typedef enum fr_kind {
    FR_FINITE = 0, /* an ordinary row */
    FR_EMPTY = 1,  /* no visible key: zeros, lse -inf */
    FR_NAN = 2     /* a NaN or +Inf logit: NaN */
} fr_kind;

/* One row of attention, in double. Inputs: n keys, logit l[j] and its
 * absolute error bound le[j] for visible keys (vis[j] != 0). Outputs:
 * w[j] (0 for invisible keys; in a NaN row NaN for visible keys), sup[j]
 * (the keys a correct float32 result may give weight to: visible, finite,
 * within 2ε + 100 of the maximum), the relative weight bound *rel (TOL + 2ε;
 * +inf when that reaches 1: then only 0 <= w <= 1 is known), *lse and its
 * bound *lse_tol. Returns the row's kind. */
fr_kind fr_softmax(int64_t n, const double *l, const double *le, const unsigned char *vis,
                   double *w, unsigned char *sup, double *rel, double *lse, double *lse_tol);

/* out_d = Σ_j w_j v[j·ld + d] over visible j, with its bound, for d < dv.
 * v is read only for visible keys. For a NaN or empty row, out is NaN or 0
 * and tol 0. Non-finite values in v make out non-finite (tol +inf). */
void fr_pool(fr_kind kind, int64_t n, const double *w, const unsigned char *sup, double rel,
             const unsigned char *vis, const double *v, int64_t ld, int64_t dv, double *out,
             double *tol);

/* Whether libattn's float x is acceptable for the reference value r with
 * bound tol (tol = +inf: any non-finite x of the same class). NaN r wants a
 * NaN; ±Inf r wants x == r or NaN (a flushed weight times Inf). */
int fr_accept(float x, double r, double tol);

#endif /* FUZZ_REF_H */
