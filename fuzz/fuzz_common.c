/*
 * fuzz_common.c — what fuzz_api.c's drivers share: decoding of the input
 * bytes, quantized data, masks (libattn's and the reference's view), output
 * canaries, the expected statuses, and the row-by-row comparison with the
 * float64 reference of fuzz_ref.c. See fuzz_common.h.
 */
#include "fuzz_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- input decoding -------------------------------------------------------- */

uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

unsigned u8(rd *r)
{
    if (r->n) {
        r->n--;
        return *r->p++;
    }
    return (unsigned)(splitmix(&r->s) & 0xff);
}

int64_t pick(rd *r, int64_t lo, int64_t hi) /* hi - lo < 256 */
{
    return lo + (int64_t)(u8(r) % (unsigned)(hi - lo + 1));
}

int chance(rd *r, unsigned percent)
{
    return u8(r) % 100 < percent;
}

/* A length: mostly small, sometimes up to max (crossing block sizes). */
int64_t length(rd *r, int64_t small, int64_t max)
{
    return chance(r, 75) ? pick(r, 0, small) : pick(r, 0, max);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_api: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* Data: multiples of 1/q in [-range, range), from the PRNG; styles for
 * coverage of ties and zeros. */
float *data(rd *r, int64_t n, int q, int range)
{
    float *x = xalloc((size_t)n * sizeof *x);
    int style = (int)pick(r, 0, 7);
    uint64_t s = r->s ^ (uint64_t)u8(r) << 8;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = (int64_t)(splitmix(&s) % (uint64_t)(2 * range * q)) - range * q;
        x[i] = style == 0 ? 0.0f : style == 1 ? (float)(range * q / 2) / (float)q
                                               : (float)k / (float)q;
        if (style == 2 && i % 3)
            x[i] = 0.0f;
    }
    return x;
}

void pick_poison(rd *r, poison *p, int allow_qk, int64_t B, int64_t Hq, int64_t Hkv,
                        int64_t Lq, int64_t Lkv)
{
    static const float values[3] = {NAN, INFINITY, -INFINITY};
    memset(p, 0, sizeof *p);
    if (!chance(r, 30))
        return;
    p->tensor = (int)pick(r, allow_qk ? 1 : 3, 3);
    int64_t heads = p->tensor == 1 ? Hq : Hkv, len = p->tensor == 1 ? Lq : Lkv;
    if (B == 0 || len == 0) {
        p->tensor = 0;
        return;
    }
    p->b = pick(r, 0, B - 1), p->h = pick(r, 0, heads - 1), p->s = pick(r, 0, len - 1);
    p->whole = chance(r, 50);
    p->value = values[pick(r, 0, 2)];
}

/* ---- masks ----------------------------------------------------------------- */

/* A broadcast dim: 1, the op's size, or (rarely) a wrong one. */
static int64_t bdim(rd *r, int64_t full, int *mismatch)
{
    unsigned c = u8(r) % 16;
    if (c == 0) { /* neither 1 nor full */
        *mismatch = 1;
        return full + 2;
    }
    return c < 8 ? 1 : full;
}

static const float bias_specials[4] = {-INFINITY, -1e30f, 1e30f, -3.0e38f};

/* Makes a mask for (B, H, Lq, Lkv). Setter statuses are checked here.
 * huge_scale: no ±1e30 biases (their sum with logits of 1e30 rounds
 * differently in float and double; the reference's bounds do not cover
 * that). */
void make_mask(rd *r, fmask *m, int64_t B, int64_t H, int64_t Lq, int64_t Lkv,
                      int huge_scale, int poison_bias)
{
    memset(m, 0, sizeof *m);
    if (!chance(r, 70))
        return;
    CHECK(attn_mask_create(&m->mask) == ATTN_OK, "attn_mask_create");
    attn_status st;
    if (chance(r, 50)) { /* valid lengths */
        int per_query = chance(r, 40);
        int64_t lb = B, lq = Lq;
        if (chance(r, 4))
            lb = B + 1, m->mismatch = 1;
        if (per_query && chance(r, 4))
            lq = Lq + 1, m->mismatch = 1;
        int64_t n = lb * (per_query ? lq : 1);
        m->len = xalloc((size_t)n * sizeof *m->len);
        int negative = 0;
        for (int64_t i = 0; i < n; i++) {
            unsigned c = u8(r) % 32;
            m->len[i] = c == 0 ? Lkv + 1 : c == 1 ? -1 : c < 6 ? 0 : c < 12 ? Lkv
                                                                       : pick(r, 0, Lkv);
            m->bad_length |= m->len[i] > Lkv;
            negative |= m->len[i] < 0;
        }
        int pq = chance(r, 2) ? 2 : per_query;
        st = attn_mask_set_kv_lengths(m->mask, n ? m->len : NULL, lb, lq, pq);
        if (pq == 2 || negative) { /* refused: the mask stays without lengths */
            CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "set_kv_lengths: %d, want INVALID", st);
            m->bad_length = 0, m->mismatch = 0;
        } else {
            CHECK(st == ATTN_OK, "set_kv_lengths: %d (%s)", st, attn_last_error());
            m->has_len = 1, m->per_query = per_query;
        }
    }
    int mm = 0;
    if (chance(r, 40)) { /* boolean keep-mask */
        m->kb = bdim(r, B, &mm), m->kh = bdim(r, H, &mm), m->kq = bdim(r, Lq, &mm);
        int64_t lk = chance(r, 3) ? (mm = 1, Lkv + 1) : Lkv;
        int64_t n = m->kb * m->kh * m->kq * lk;
        int bad = m->kb < 1 || m->kq < 1;
        m->keep = xalloc((size_t)n);
        int density = (int)pick(r, 0, 4);
        uint64_t s = r->s ^ u8(r);
        for (int64_t i = 0; i < n; i++)
            m->keep[i] = (uint8_t)(density == 0 ? 0 : splitmix(&s) % 4 < (uint64_t)density);
        st = attn_mask_set_bool(m->mask, n ? m->keep : NULL, m->kb, m->kh, m->kq, lk);
        if (bad) {
            CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "set_bool: %d, want INVALID", st);
        } else {
            CHECK(st == ATTN_OK, "set_bool: %d (%s)", st, attn_last_error());
            m->has_keep = 1;
            m->mismatch |= mm;
        }
    }
    mm = 0;
    if (chance(r, 40)) { /* additive bias */
        m->bb = bdim(r, B, &mm), m->bh = bdim(r, H, &mm), m->bq = bdim(r, Lq, &mm);
        int64_t lk = chance(r, 3) ? (mm = 1, Lkv + 1) : Lkv;
        int64_t n = m->bb * m->bh * m->bq * lk;
        int bad = m->bb < 1 || m->bq < 1;
        m->bias = xalloc((size_t)n * sizeof *m->bias);
        uint64_t s = r->s ^ (uint64_t)u8(r) << 16;
        int specials = (int)pick(r, 0, 3);
        for (int64_t i = 0; i < n; i++) {
            uint64_t z = splitmix(&s);
            float v = (float)((int64_t)(z % 64) - 32) / 4.0f;
            if ((z >> 8) % 8 < (uint64_t)specials) {
                int k = (int)((z >> 16) % 4);
                if (!(huge_scale && (k == 1 || k == 2 || k == 3)))
                    v = bias_specials[k];
            }
            m->bias[i] = v;
        }
        if (poison_bias && n > 0) /* +Inf or NaN make their row NaN */
            m->bias[(int64_t)(s % (uint64_t)n)] = (s & 1) ? NAN : INFINITY;
        st = attn_mask_set_bias(m->mask, n ? m->bias : NULL, m->bb, m->bh, m->bq, lk);
        if (bad) {
            CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "set_bias: %d, want INVALID", st);
        } else {
            CHECK(st == ATTN_OK, "set_bias: %d (%s)", st, attn_last_error());
            m->has_bias = 1;
            m->mismatch |= mm;
        }
    }
    if (!m->has_len)
        m->bad_length = 0;
}

void free_mask(fmask *m)
{
    attn_mask_destroy(m->mask);
    free(m->len), free(m->keep), free(m->bias);
}

/* Key j visible to (b, h, i) by the mask and causal rule; *bias its bias.
 * A NaN or +Inf bias makes its row NaN (attn.h) also when the boolean mask
 * hides the key (src/softmax.c adds the bias after the keep-mask's -Inf);
 * the causal rule and valid lengths hide it for good. */
int visible(const fmask *m, int causal, int64_t Lq, int64_t Lkv, int64_t b, int64_t h,
            int64_t i, int64_t j, double *bias)
{
    *bias = 0.0;
    if (causal == ATTN_CAUSAL_TOP_LEFT && j > i)
        return 0;
    if (causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + Lkv - Lq)
        return 0;
    if (m->has_len && j >= (m->per_query ? m->len[b * Lq + i] : m->len[b]))
        return 0;
    if (m->has_bias) {
        int64_t x = (((m->bb == 1 ? 0 : b) * m->bh + (m->bh == 1 ? 0 : h)) * m->bq +
                     (m->bq == 1 ? 0 : i)) * Lkv + j;
        if (m->bias[x] == -INFINITY)
            return 0;
        *bias = m->bias[x];
        if (isnan(*bias) || *bias == INFINITY)
            return 1;
    }
    if (m->has_keep) {
        int64_t x = (((m->kb == 1 ? 0 : b) * m->kh + (m->kh == 1 ? 0 : h)) * m->kq +
                     (m->kq == 1 ? 0 : i)) * Lkv + j;
        if (!m->keep[x])
            return 0;
    }
    return 1;
}

/* Keys at or beyond this are never read for batch row b. */
int64_t batch_limit(const fmask *m, int64_t b, int64_t Lkv)
{
    return m->has_len && !m->per_query ? m->len[b] : Lkv;
}

/* ---- outputs ------------------------------------------------------------------ */

void outs_make(outs *x, int64_t no, int64_t nw, int64_t nl, int want_w, int want_l)
{
    x->no = no, x->nw = want_w ? nw : 0, x->nl = want_l ? nl : 0;
    x->o = xalloc((size_t)no * sizeof(float));
    x->w = want_w ? xalloc((size_t)nw * sizeof(float)) : NULL;
    x->l = want_l ? xalloc((size_t)nl * sizeof(float)) : NULL;
    memset(x->o, CANARY, (size_t)no * sizeof(float));
    if (x->w)
        memset(x->w, CANARY, (size_t)nw * sizeof(float));
    if (x->l)
        memset(x->l, CANARY, (size_t)nl * sizeof(float));
}

void outs_free(outs *x)
{
    free(x->o), free(x->w), free(x->l);
}

void expect_untouched(const outs *x, const char *func)
{
    const unsigned char *p[3] = {(void *)x->o, (void *)x->w, (void *)x->l};
    int64_t n[3] = {x->no, x->nw, x->nl};
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; p[t] && i < n[t] * 4; i++)
            CHECK(p[t][i] == CANARY, "%s failed but wrote output %d byte %lld", func, t,
                  (long long)i);
}

void expect_same_again(const outs *a, const outs *b, const char *func)
{
    CHECK(!memcmp(a->o, b->o, (size_t)a->no * 4), "%s: out differs on the second run", func);
    CHECK(!a->w || !memcmp(a->w, b->w, (size_t)a->nw * 4), "%s: weights differ on rerun", func);
    CHECK(!a->l || !memcmp(a->l, b->l, (size_t)a->nl * 4), "%s: lse differs on rerun", func);
}

/* The status of a forward call whose mask may be inconsistent. */
void expect_status(attn_status st, const fmask *m, int state_missing, const char *func)
{
    if (st != ATTN_OK)
        CHECK(strncmp(attn_last_error(), func, strlen(func)) == 0,
              "%s: message \"%s\" does not name the function", func, attn_last_error());
    if (state_missing) {
        CHECK(st == ATTN_ERR_STATE || (m->mismatch && st == ATTN_ERR_SHAPE_MISMATCH) ||
                  (m->bad_length && st == ATTN_ERR_INVALID_ARGUMENT),
              "%s: weights not set, got %d", func, st);
        return;
    }
    if (!m->mismatch && !m->bad_length) {
        CHECK(st == ATTN_OK, "%s: valid call failed: %d (%s)", func, st, attn_last_error());
        return;
    }
    CHECK((m->mismatch && st == ATTN_ERR_SHAPE_MISMATCH) ||
              (m->bad_length && st == ATTN_ERR_INVALID_ARGUMENT),
          "%s: inconsistent mask (mismatch %d, bad length %d) gave %d", func, m->mismatch,
          m->bad_length, st);
}

/* One attention row of libattn against the reference. w_lib and lse_lib may
 * be NULL (not requested). out_lib[d·ostride]; zero_nan: a NaN out is
 * acceptable here (0·NaN of P·V). */
void check_row(const char *what, const rowref *rr, int64_t n, int64_t dv,
                      const float *out_lib, int64_t ostride, const float *w_lib,
                      const float *lse_lib, int zero_nan)
{
    for (int64_t d = 0; out_lib && d < dv; d++) {
        float x = out_lib[d * ostride];
        if (rr->kind == FR_EMPTY)
            CHECK(x == 0.0f || (zero_nan && isnan(x)), "%s: empty row, out[%lld] = %g", what,
                  (long long)d, (double)x);
        else if (rr->kind == FR_NAN)
            CHECK(isnan(x), "%s: NaN row, out[%lld] = %g", what, (long long)d, (double)x);
        else
            CHECK(fr_accept(x, rr->out[d], rr->tol[d]) || (zero_nan && isnan(x)),
                  "%s: out[%lld] = %.9g, reference %.9g ± %.3g", what, (long long)d, (double)x,
                  rr->out[d], rr->tol[d]);
    }
    if (lse_lib) {
        if (rr->kind == FR_NAN)
            CHECK(isnan(*lse_lib), "%s: NaN row, lse %g", what, (double)*lse_lib);
        else if (rr->kind == FR_EMPTY)
            CHECK(*lse_lib == -INFINITY, "%s: empty row, lse %g", what, (double)*lse_lib);
        else
            CHECK(fr_accept(*lse_lib, rr->lse, rr->lse_tol), "%s: lse %.9g, reference %.9g ± %.3g",
                  what, (double)*lse_lib, rr->lse, rr->lse_tol);
    }
    if (!w_lib)
        return;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        float x = w_lib[j];
        double r = rr->w[j];
        if (rr->kind == FR_NAN) {
            CHECK(isnan(r) ? isnan(x) : (x == 0.0f || isnan(x)), "%s: NaN row, weight %lld = %g",
                  what, (long long)j, (double)x);
            continue;
        }
        if (r == 0.0 && (rr->kind == FR_EMPTY || !rr->vis[j])) {
            CHECK(x == 0.0f, "%s: masked key %lld has weight %g", what, (long long)j, (double)x);
            continue;
        }
        CHECK(x >= 0.0f && x <= 1.0f, "%s: weight %lld = %g", what, (long long)j, (double)x);
        if (rr->rel != INFINITY)
            CHECK(fabs((double)x - r) <= rr->rel * r + FR_FLOOR,
                  "%s: weight %lld = %.9g, reference %.9g (rel %.3g)", what, (long long)j,
                  (double)x, r, rr->rel);
        sum += x;
    }
    if (rr->kind == FR_FINITE)
        CHECK(fabs(sum - 1.0) <= 1e-4 + (double)n * 1e-6, "%s: weights sum to %.9g", what, sum);
}

void rowref_make(rowref *rr, int64_t n, int64_t dv)
{
    rr->w = xalloc((size_t)n * sizeof(double));
    rr->out = xalloc((size_t)dv * sizeof(double));
    rr->tol = xalloc((size_t)dv * sizeof(double));
    rr->vis = xalloc((size_t)n);
}

void rowref_free(rowref *rr)
{
    free(rr->w), free(rr->out), free(rr->tol), free(rr->vis);
}

/* Softmax and pooling of one row from its logits (l, le over n keys) and
 * values v (double, row j at v + j·ld). */
void row_reference(rowref *rr, int64_t n, const double *l, const double *le,
                          const double *v, int64_t ld, int64_t dv)
{
    unsigned char *sup = xalloc((size_t)n);
    rr->kind = fr_softmax(n, l, le, rr->vis, rr->w, sup, &rr->rel, &rr->lse, &rr->lse_tol);
    fr_pool(rr->kind, n, rr->w, sup, rr->rel, rr->vis, v, ld, dv, rr->out, rr->tol);
    free(sup);
}

attn_context *make_context(rd *r)
{
    attn_context *ctx = NULL;
    CHECK(attn_context_create(&ctx) == ATTN_OK, "attn_context_create");
    int t = chance(r, 60) ? 1 : chance(r, 80) ? 2 : 3;
    CHECK(attn_context_set_num_threads(ctx, t) == ATTN_OK, "set_num_threads");
    return ctx;
}

