/*
 * test_util.h — shared helpers of libattn's C tests (no CMocka dependency).
 *
 *  1. A seeded, deterministic PRNG (splitmix64) with uniform and normal fills,
 *     so every randomised test reproduces bit for bit from its seed.
 *  2. ref_sdpa: an independent float64 reference of attn_sdpa_forward,
 *     written plainly with loops from the formula in attn.h. It takes its
 *     masks as a plain struct of its own (ref_mask), never libattn's opaque
 *     attn_mask, so that it shares no code and no assumptions with the library.
 *  3. tu_max_err / tu_max_err_lse: tolerance comparisons that return the
 *     largest normalized error and where it occurred (no asserts).
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* ---- PRNG ------------------------------------------------------------ */

typedef struct tu_rng {
    uint64_t state;
} tu_rng;

void     tu_rng_seed(tu_rng *rng, uint64_t seed);
uint64_t tu_rng_next(tu_rng *rng);                 /* splitmix64 */
double   tu_uniform(tu_rng *rng);                  /* in [0, 1) */
double   tu_normal(tu_rng *rng);                   /* N(0, 1), Box–Muller */
int64_t  tu_randint(tu_rng *rng, int64_t lo, int64_t hi); /* in [lo, hi] */

/* dst[i] = lo + (hi - lo)·U[0,1) */
void tu_fill_uniform(tu_rng *rng, float *dst, size_t n, float lo, float hi);
/* dst[i] = mean + stddev·N(0,1) */
void tu_fill_normal(tu_rng *rng, float *dst, size_t n, float mean, float stddev);
/* dst[i] = NaN (to catch output elements a call forgot to write) */
void tu_fill_nan(float *dst, size_t n);

/* ---- float64 reference of scaled dot-product attention ---------------- */

/* Layout and causal values mirror attn_layout / attn_causal of attn.h. */
enum { REF_BHSD = 0, REF_BSHD = 1 };
enum { REF_CAUSAL_NONE = 0, REF_CAUSAL_TOP_LEFT = 1, REF_CAUSAL_BOTTOM_RIGHT = 2 };

/* Score modifiers, from the formulas of attn.h's "Score modifiers" group:
 * with p the aligned position (i under top-left causal, i + len_kv − len_q
 * otherwise), key j is visible only if p − left <= j <= p + right (a side
 * of −1 is unbounded; window = 0 means no window at all), and its logit is
 * s = softcap · tanh(s / softcap) (softcap > 0), + bias, − alibi[h] · |p − j|
 * (alibi NULL: none). */
typedef struct ref_mods {
    int window;
    int64_t left, right;
    double softcap;
    const float *alibi;   /* [heads_q] */
} ref_mods;

/* The aligned position of query i (causal a REF_CAUSAL_* value). */
int64_t ref_aligned_position(int causal, int64_t i, int64_t len_q, int64_t len_kv);
/* Whether the window of m (NULL: none) lets query position p see key j. */
int ref_window_visible(const ref_mods *m, int64_t p, int64_t j);
/* The modified logit of raw scaled logit s with bias (0 without one), for
 * head h, position p and key j; *cap_factor (if not NULL) receives
 * d(capped)/ds = 1 − tanh²(s / softcap), or 1 without a softcap. */
double ref_modified_logit(const ref_mods *m, int64_t h, int64_t p, int64_t j, double s,
                          double bias, double *cap_factor);

/* Rotary embedding of one head's row x[0..head_dim) in double, as the
 * reference implementations write it: style 0 is HF transformers'
 * apply_rotary_pos_emb (x·cos + rotate_half(x)·sin with cos, sin =
 * cat(cos θ, cos θ), cat(sin θ, sin θ) and rotate_half(x) = cat(−x2, x1)),
 * style 1 Meta's complex form (x[2i] + i·x[2i+1]) · e^{iθ}; on the first
 * rotary_dim features, θ_i = pos · inv_freq[i] (inv_freq [rotary_dim/2]),
 * by −θ when inverse. */
void ref_rope_row(double *x, int style, int64_t rotary_dim, const double *inv_freq, double pos,
                  int inverse);
/* inv_freq[i] = 1 / base^(2i / rotary_dim) (HF's formula, in double). */
void ref_rope_inv_freq(double base, int64_t rotary_dim, double *inv_freq);

typedef struct ref_shape {
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
    int layout;   /* REF_BHSD or REF_BSHD: applies to q, k, v and out */
    int causal;   /* REF_CAUSAL_* */
    double scale; /* the factor on q·k (pass the same float the op uses) */
    const ref_mods *mods;  /* NULL: none */
} ref_shape;

/* The test's own description of a mask. Every pointer may be NULL (that kind
 * is absent). keep and bias have shape [m?_b, m?_h, m?_q, len_kv] where each
 * of the first three is 1 (broadcast) or batch / heads_q / len_q. */
typedef struct ref_mask {
    const int64_t *lengths;   /* [batch] (per_query 0) or [batch, len_q] */
    int per_query;
    const uint8_t *keep;      /* != 0 = attend */
    int64_t keep_b, keep_h, keep_q;
    const float *bias;        /* added after scaling; -INFINITY masks the key */
    int64_t bias_b, bias_h, bias_q;
} ref_mask;

/* Computes, in double, for every b, h (query head), i:
 *   g = h / (heads_q / heads_kv)
 *   key j is visible if it is allowed by the causal setting
 *   (TOP_LEFT: j <= i; BOTTOM_RIGHT: j <= i + len_kv - len_q), by the valid
 *   length (j < length), by keep (!= 0), by the window of s->mods, and its
 *   bias is not -INFINITY;
 *   l_j = scale·Σ_d q·k + bias, or ref_modified_logit of it with s->mods;
 *   m = max_j l_j (NaN if any l_j is NaN);
 *   w_j = exp(l_j - m) / Σ exp(l_j' - m) for visible keys, 0 otherwise;
 *   out = Σ_j w_j v_j;  lse = m + log Σ exp(l_j - m).
 * A row with no visible key gets out = 0, weights = 0, lse = -INFINITY.
 * Masked keys are never read (their k and v may hold anything).
 * out is in the layout of q; weights is [batch, heads_q, len_q, len_kv] and
 * lse [batch, heads_q, len_q]. mask, weights and lse may be NULL.
 * Returns 0, or -1 if its one-row scratch cannot be allocated. */
int ref_sdpa(const ref_shape *s, const float *q, const float *k, const float *v,
             const ref_mask *mask, double *out, double *weights, double *lse);

/* Gradients of ref_sdpa's out, in double, from the weights w it computes:
 * for each (b, h, i), with dO = d_out's row,
 *   dP_j = dO · v_j,  D = Σ_j w_j dP_j,  dS_j = w_j (dP_j − D) · c_j,
 *   d_q[i] = scale Σ_j dS_j k_j,  d_k[j] += scale dS_j q_i,  d_v[j] += w_j dO
 * with c_j the softcap's 1 − tanh²(s_j / softcap) (1 without one)
 * summed over every query head of a kv head's group (GQA). Keys of weight 0
 * (masked) contribute nothing and are not read. d_out has the layout of out;
 * d_q, d_k, d_v (each may be NULL) those of q, k, v.
 *
 * magnitudes = 1 writes, instead of each gradient, the same sums over the
 * absolute values of their terms (dP_j = Σ|dO·v|, dS_j = w_j (dP_j + D),
 * Σ dS_j |k_j| ...): the scale that float rounding errors are relative to.
 * A gradient that cancels to 0 (a row with one visible key has d_q = 0)
 * is judged against it (tu_max_err_scaled), not against its own size.
 * Returns 0, or -1 if its scratch cannot be allocated. */
int ref_sdpa_backward(const ref_shape *s, const float *q, const float *k, const float *v,
                      const ref_mask *mask, const float *d_out, int magnitudes, double *d_q,
                      double *d_k, double *d_v);

/* Index of element (b, h, s, d) of a tensor with `heads` heads, `len`
 * positions and `dim` features, in layout REF_BHSD or REF_BSHD. */
int64_t ref_index(int layout, int64_t heads, int64_t len, int64_t dim, int64_t b, int64_t h,
                  int64_t s, int64_t d);

/* ---- tolerance comparison --------------------------------------------- */

/* The normalized error. The n elements are split into consecutive rows of
 * row_len elements (the last row may be shorter). For element x of a row:
 *
 *     err(x) = |a(x) - r(x)| / (|r(x)| + rowmax |r|)
 *
 * where rowmax |r| is the largest finite |r| of that row of the reference.
 * So an element is judged against its own size and against the size of its
 * row, and a row that is exactly 0 in the reference (a fully masked row) must
 * be exactly 0 (err = 0 if a == r, otherwise +INFINITY).
 * Non-finite references must be matched exactly: r = ±INFINITY requires
 * a == r, r = NaN requires a NaN; a non-finite a for a finite r, or a NaN a
 * for a non-NaN r, gives +INFINITY.
 *
 * Returns the largest err over all elements (0 when n == 0) and stores the
 * index of the first element attaining it in *worst (if worst != NULL;
 * -1 when n == 0). */
double tu_max_err(const float *actual, const double *ref, int64_t n, int64_t row_len,
                  int64_t *worst);

/* The same for log-sum-exp values, with err = |a - r| / (|r| + 1) and the
 * same rules for non-finite values (-INFINITY must match exactly). */
double tu_max_err_lse(const float *actual, const double *ref, int64_t n, int64_t *worst);

/* Error against a scale per row: err(x) = |a(x) − r(x)| / rowmax magnitude,
 * with rows of row_len elements as tu_max_err; a NaN a, or a difference in a
 * row whose magnitudes are all 0, gives +INFINITY. */
double tu_max_err_scaled(const float *actual, const double *ref, const double *magnitude,
                         int64_t n, int64_t row_len, int64_t *worst);

/* ∂loss/∂x at the float *x by central differences: the steps x ± h are
 * taken as floats hold them (each step is measured, not assumed) and the
 * second-order formula for unequal steps is used. *x is restored; loss(arg)
 * is called three times and must read *x. */
double tu_central_difference(float *x, double h, double (*loss)(void *arg), void *arg);

/* Number of elements of x that are NaN or infinite. */
int64_t tu_count_nonfinite(const float *x, int64_t n);

/* Whether this process runs under Valgrind, whose emulated CPU (its cpuid
 * describes an Intel Haswell in Valgrind 3.19) is not the machine's: tests
 * that compare what the CPU reports with /proc/cpuinfo or with a program run
 * natively skip then. Valgrind's preload libraries in LD_PRELOAD tell. */
int tu_under_valgrind(void);

#endif /* TEST_UTIL_H */
