/*
 * fuzz_common.h — the pieces fuzz_api.c's drivers share.
 *
 * Input decoding: bytes are read one at a time (u8); once the input is used
 * up, a PRNG seeded by the whole input takes over, so every input decodes to
 * a complete problem. Data are drawn from that PRNG, quantized (multiples of
 * 1/q), so that libFuzzer's mutations steer shapes, options and masks while
 * the float32 arithmetic of dot products and projections stays exact.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <attn.h>

#include "fuzz_ref.h"

/* ---- decoding ------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t n;
    uint64_t s;   /* PRNG state: for data, and for decoding past the input */
} rd;

uint64_t splitmix(uint64_t *s);
unsigned u8(rd *r);
int64_t pick(rd *r, int64_t lo, int64_t hi);        /* in [lo, hi], hi - lo < 256 */
int chance(rd *r, unsigned percent);
int64_t length(rd *r, int64_t small, int64_t max);  /* mostly <= small */

/* Aborts with a message: the fuzzer's failure. */
void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
#define CHECK(cond, ...)      \
    do {                      \
        if (!(cond))          \
            die(__VA_ARGS__); \
    } while (0)

void *xalloc(size_t n);

/* n floats, multiples of 1/q in [-range, range) (some styles: zeros, all
 * equal, sparse). */
float *data(rd *r, int64_t n, int q, int range);

/* At most one NaN, +Inf or -Inf in one row of q (1), k (2) or v (3). */
typedef struct poison {
    int tensor;      /* 0: none */
    int64_t b, h, s; /* batch row, head, position */
    int whole;       /* every feature of the row, else feature 0 only */
    float value;
} poison;
void pick_poison(rd *r, poison *p, int allow_qk, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq,
                 int64_t Lkv);

/* ---- masks ----------------------------------------------------------------- */

typedef struct fmask {
    attn_mask *mask;                  /* NULL: no mask passed */
    int has_len, per_query, has_keep, has_bias;
    int64_t *len;
    uint8_t *keep;
    float *bias;
    int64_t kb, kh, kq, bb, bh, bq;   /* broadcast dims as set */
    int mismatch, bad_length;         /* a forward with it must fail */
} fmask;

/* A mask for (B, H, Lq, Lkv), sometimes inconsistent on purpose; setter
 * statuses are checked. huge_scale: no finite ±1e30 biases (with logits of
 * 1e30 their sums round differently in float and double). poison_bias: one
 * bias entry NaN or +Inf. */
void make_mask(rd *r, fmask *m, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int huge_scale,
               int poison_bias);
void free_mask(fmask *m);
/* Key j visible to (b, h, i) by the mask and the causal rule; *bias its bias. */
int visible(const fmask *m, int causal, int64_t Lq, int64_t Lkv, int64_t b, int64_t h, int64_t i,
            int64_t j, double *bias);
/* Keys at or beyond this are never read for batch row b (per-batch lengths). */
int64_t batch_limit(const fmask *m, int64_t b, int64_t Lkv);

/* ---- outputs and statuses ---------------------------------------------------- */

#define CANARY 0xA5

typedef struct outs {
    float *o, *w, *l;      /* w, l NULL when not requested */
    int64_t no, nw, nl;
} outs;
void outs_make(outs *x, int64_t no, int64_t nw, int64_t nl, int want_w, int want_l);
void outs_free(outs *x);
/* Every output byte still holds the canary (after a failed call). */
void expect_untouched(const outs *x, const char *func);
/* The second run on the same context gave bitwise the same outputs. */
void expect_same_again(const outs *a, const outs *b, const char *func);
/* The status a forward call with mask m (and weights set or not) must give. */
void expect_status(attn_status st, const fmask *m, int state_missing, const char *func);

/* ---- comparison with the reference --------------------------------------------- */

typedef struct rowref {
    fr_kind kind;
    double rel, lse, lse_tol;
    double *w, *out, *tol;  /* [n], [dv], [dv] */
    unsigned char *vis;     /* [n]: filled by the caller */
} rowref;
void rowref_make(rowref *rr, int64_t n, int64_t dv);
void rowref_free(rowref *rr);
/* Softmax and pooling of one row from its logits l (bounds le) and values v
 * (double, key j's row at v + j·ld). */
void row_reference(rowref *rr, int64_t n, const double *l, const double *le, const double *v,
                   int64_t ld, int64_t dv);
/* libattn's row against rr: out_lib[d·ostride] (NULL: not checked), w_lib
 * (NULL: not requested), lse_lib (NULL: not requested). zero_nan: a NaN out
 * is acceptable (the 0·NaN of P·V for a value this row does not see). */
void check_row(const char *what, const rowref *rr, int64_t n, int64_t dv, const float *out_lib,
               int64_t ostride, const float *w_lib, const float *lse_lib, int zero_nan);

/* A context with 1 (mostly), 2 or 3 threads. */
attn_context *make_context(rd *r);

/* fuzz_kv_cache.c: KV-cache operations against a plain model. */
void fuzz_kv_cache(rd *r);

#endif /* FUZZ_COMMON_H */
