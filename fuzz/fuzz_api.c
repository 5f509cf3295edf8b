/*
 * fuzz_api.c — libFuzzer target for libattn's public API.
 *
 * Each input is decoded into one problem: an operation (SDPA, multi-head
 * attention, additive attention, Nadaraya–Watson, the Transformer encoder
 * layer: post- or pre-norm, ReLU or GELU, causal, dropout, parameters set
 * or not; or a run of KV-cache operations, fuzz_kv_cache.c), small shapes
 * (batch 0–3,
 * up to 140 query rows so that blocks of 64 rows and, for the layers, blocks
 * of 256 projection rows are crossed, up to 40 keys, dims up to 16),
 * options (layout, causal, scale — valid or not), a mask (per-batch or
 * per-query valid lengths, a boolean mask, an additive bias with -Inf and
 * ±1e30; random broadcasting, sometimes mismatched on purpose), the thread
 * count, and data: quantized values from a PRNG seeded by the input, with at
 * most one NaN, +Inf or -Inf in one query, key or value row (or bias).
 *
 * Checks (any failure aborts, as does any ASan/UBSan report):
 *   - every call returns the status its arguments call for: ATTN_OK for a
 *     valid call, the documented error otherwise, with attn_last_error()
 *     naming the function; a failed create leaves its out-pointer alone;
 *   - a failed forward writes no output byte;
 *   - a successful forward agrees with the float64 reference of fuzz_ref.c
 *     within its error bounds — out, weights, lse — with NaN and Inf where
 *     attn.h puts them: a value's NaN may reach rows that do not see it only
 *     through the 0·NaN of P·V, and never from beyond a batch row's
 *     per-batch valid length;
 *   - the same call again on the same context gives bitwise the same
 *     outputs;
 *   - attn_sdpa_backward after each SDPA forward, and the multi-head
 *     layer's training pair after each successful layer forward
 *     (fuzz_sdpa_backward and fuzz_mha_training say what they check);
 *   - the encoder layer (no float64 reference: its numbers are checked by
 *     the test suite's goldens): statuses, untouched outputs, the same bits
 *     again and in place, out overlapping src refused, finite out for finite
 *     inputs, and its training pair after every forward
 *     (fuzz_encoder_training says what it checks).
 * Data are multiples of 1/8 (weights 1/16), so float32 dot products and
 * projections are exact and the reference's bounds stay tight.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "fuzz_common.h"

static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)

/* Applies p to a [B, heads, len, dim] tensor (BHSD or BSHD). */
static void apply_poison(const poison *p, int which, float *x, int bshd, int64_t heads,
                         int64_t len, int64_t dim)
{
    if (p->tensor != which)
        return;
    for (int64_t d = 0; d < (p->whole ? dim : 1); d++) {
        int64_t at = bshd ? ((p->b * len + p->s) * heads + p->h) * dim + d
                          : ((p->b * heads + p->h) * len + p->s) * dim + d;
        x[at] = p->value;
    }
}

static double *to_double(const float *x, int64_t n)
{
    double *y = xalloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* Whether a NaN out of row (b, g) may come from a poisoned value it does
 * not see (0·NaN in P·V): only if the value is read at all. */
static int zero_nan_allowed(const poison *p, const fmask *m, int64_t b, int64_t g, int64_t Lkv)
{
    return p->tensor == 3 && p->b == b && p->h == g && p->s < batch_limit(m, b, Lkv);
}

/* ---- scaled dot-product attention ---------------------------------------------- */

/* The shapes of one SDPA problem, for the backward's checks. */
typedef struct sdpa_dims {
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    int layout;
} sdpa_dims;

static int64_t row_at(const sdpa_dims *s, int64_t heads, int64_t len, int64_t dim, int64_t b,
                      int64_t h, int64_t i)
{
    return s->layout ? ((b * len + i) * heads + h) * dim : ((b * heads + h) * len + i) * dim;
}

/* attn_sdpa_backward after a forward with the same op and mask:
 *   - a mask the forward refused gives the same status, and no gradient
 *     byte is written;
 *   - otherwise ATTN_OK, bitwise the same gradients again on the same
 *     context, finite gradients when the inputs and the forward's outputs
 *     are finite (and the scale is not ±1e30), zeros in d_q for rows with
 *     no visible key (lse -inf; unless a key holds a NaN or Inf that the
 *     dS·K product may carry as 0·NaN), and zeros in d_k and d_v for keys
 *     at or beyond a batch row's per-batch valid length. */
static void fuzz_sdpa_backward(rd *r, attn_context *ctx, const attn_sdpa *op, const sdpa_dims *s,
                               const float *q, const float *k, const float *v, const fmask *m,
                               attn_status forward_status, const poison *p, int huge)
{
    int64_t nq = s->B * s->Hq * s->Lq * s->D, nk = s->B * s->Hkv * s->Lkv * s->D;
    int64_t nv = s->B * s->Hkv * s->Lkv * s->Dv, no = s->B * s->Hq * s->Lq * s->Dv;
    int64_t nl = s->B * s->Hq * s->Lq;
    float *fo = xalloc((size_t)(no + 1) * sizeof *fo), *fl = xalloc((size_t)(nl + 1) * sizeof *fl);
    float *d_out = data(r, no, 8, 2);
    outs g, g2;  /* o = d_q, w = d_k, l = d_v */
    outs_make(&g, nq, nk, nv, chance(r, 80), chance(r, 80));
    if (forward_status != ATTN_OK) {
        attn_status st = attn_sdpa_backward(ctx, op, q, k, v, m->mask, fo, fl, d_out,
                                            nq ? g.o : NULL, g.w, g.l);
        expect_status(st, m, 0, "attn_sdpa_backward");
        expect_untouched(&g, "attn_sdpa_backward");
        goto done;
    }
    CHECK(attn_sdpa_forward(ctx, op, q, k, v, m->mask, fo, NULL, fl) == ATTN_OK, "forward");
    CHECK(attn_sdpa_backward(ctx, op, q, k, v, m->mask, fo, fl, d_out, nq ? g.o : NULL, g.w,
                             g.l) == ATTN_OK,
          "attn_sdpa_backward: %s", attn_last_error());
    outs_make(&g2, nq, nk, nv, g.w != NULL, g.l != NULL);
    CHECK(attn_sdpa_backward(ctx, op, q, k, v, m->mask, fo, fl, d_out, nq ? g2.o : NULL, g2.w,
                             g2.l) == ATTN_OK, "backward rerun");
    expect_same_again(&g, &g2, "attn_sdpa_backward");
    outs_free(&g2);

    int finite_in = p->tensor == 0 && !huge;
    for (int64_t i = 0; i < no && finite_in; i++)
        finite_in = isfinite(fo[i]);
    for (int64_t i = 0; i < nl && finite_in; i++)
        finite_in = !isnan(fl[i]) && fl[i] != INFINITY;
    float *grads[3] = {g.o, g.w, g.l};
    int64_t counts[3] = {nq, nk, nv};
    for (int t = 0; t < 3 && finite_in; t++)
        for (int64_t i = 0; grads[t] && i < counts[t]; i++)
            CHECK(isfinite(grads[t][i]), "backward: gradient %d element %lld is %g with finite "
                  "inputs and outputs", t, (long long)i, (double)grads[t][i]);
    for (int64_t b = 0; b < s->B; b++) {
        for (int64_t h = 0; h < s->Hq && p->tensor != 2; h++)
            for (int64_t i = 0; i < s->Lq; i++) {
                if (fl[(b * s->Hq + h) * s->Lq + i] != -INFINITY)
                    continue;
                const float *row = g.o + row_at(s, s->Hq, s->Lq, s->D, b, h, i);
                for (int64_t d = 0; d < s->D; d++)
                    CHECK(row[d] == 0.0f, "backward: d_q of a row with no visible key is %g",
                          (double)row[d]);
            }
        for (int64_t g_ = 0; g_ < s->Hkv; g_++)
            for (int64_t j = batch_limit(m, b, s->Lkv); j < s->Lkv; j++) {
                for (int64_t d = 0; g.w && d < s->D; d++)
                    CHECK(g.w[row_at(s, s->Hkv, s->Lkv, s->D, b, g_, j) + d] == 0.0f,
                          "backward: d_k of a key beyond the valid length");
                for (int64_t d = 0; g.l && d < s->Dv; d++)
                    CHECK(g.l[row_at(s, s->Hkv, s->Lkv, s->Dv, b, g_, j) + d] == 0.0f,
                          "backward: d_v of a key beyond the valid length");
            }
    }
done:
    outs_free(&g);
    free(fo), free(fl), free(d_out);
}

static void fuzz_sdpa(rd *r)
{
    int64_t B = pick(r, 0, 3), Hkv = pick(r, 1, 3), G = pick(r, 1, 3), Hq = Hkv * G;
    int64_t Lq = length(r, 9, 140), Lkv = length(r, 12, 40);
    int64_t D = pick(r, 1, 16), Dv = pick(r, 1, 16);
    attn_sdpa *op = SENTINEL;
    if (chance(r, 4)) { /* invalid shapes */
        static const attn_status want[4] = {ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_SHAPE_MISMATCH,
                                            ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_UNSUPPORTED};
        int k = (int)pick(r, 0, 3);
        attn_status st = attn_sdpa_create(&op, k == 0 ? -1 : B, Hq, k == 1 ? Hq + 1 : Hkv, Lq,
                                          k == 3 ? (int64_t)1 << 31 : Lkv, k == 2 ? 0 : D, Dv);
        CHECK(st == want[k], "sdpa_create invalid case %d: got %d", k, st);
        CHECK(op == SENTINEL, "sdpa_create failed but wrote *op");
        CHECK(!strncmp(attn_last_error(), "attn_sdpa_create", 16), "message");
        return;
    }
    CHECK(attn_sdpa_create(&op, B, Hq, Hkv, Lq, Lkv, D, Dv) == ATTN_OK, "sdpa_create: %s",
          attn_last_error());
    int layout = (int)pick(r, 0, 1), causal = (int)pick(r, 0, 2);
    if (chance(r, 3)) {
        CHECK(attn_sdpa_set_layout(op, (attn_layout)7) == ATTN_ERR_INVALID_ARGUMENT, "layout 7");
        layout = 0;
    } else
        CHECK(attn_sdpa_set_layout(op, (attn_layout)layout) == ATTN_OK, "set_layout");
    if (chance(r, 3)) {
        CHECK(attn_sdpa_set_causal(op, (attn_causal)3) == ATTN_ERR_INVALID_ARGUMENT, "causal 3");
        causal = 0;
    } else
        CHECK(attn_sdpa_set_causal(op, (attn_causal)causal) == ATTN_OK, "set_causal");
    static const float scales[] = {0.0f /* default */, 1.0f, 0.5f, 0.125f, 2.0f, -1.0f,
                                   1e-30f, 1e30f, -1e30f, 0.0f /* zero */, NAN, INFINITY};
    int sk = (int)pick(r, 0, sizeof scales / sizeof scales[0] - 1);
    float scale = (float)(1.0 / sqrt((double)D));
    if (sk > 0) {
        attn_status st = attn_sdpa_set_scale(op, scales[sk]);
        if (isfinite(scales[sk])) {
            CHECK(st == ATTN_OK, "set_scale");
            scale = scales[sk];
        } else
            CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "set_scale(non-finite) gave %d", st);
    }
    int huge = fabsf(scale) >= 1e29f;
    poison p;
    pick_poison(r, &p, scale != 0.0f, B, Hq, Hkv, Lq, Lkv);
    fmask m;
    make_mask(r, &m, B, Hq, Lq, Lkv, huge, p.tensor == 0 && chance(r, 5));
    int64_t nq = B * Hq * Lq * D, nk = B * Hkv * Lkv * D, nv = B * Hkv * Lkv * Dv;
    int64_t no = B * Hq * Lq * Dv, nw = B * Hq * Lq * Lkv, nl = B * Hq * Lq;
    float *q = data(r, nq, 8, 2), *k = data(r, nk, 8, 2), *v = data(r, nv, 8, 2);
    apply_poison(&p, 1, q, layout, Hq, Lq, D);
    apply_poison(&p, 2, k, layout, Hkv, Lkv, D);
    apply_poison(&p, 3, v, layout, Hkv, Lkv, Dv);
    int want_w = chance(r, 60), want_l = chance(r, 60);
    attn_context *ctx = make_context(r);
    outs a, b;
    outs_make(&a, no, nw, nl, want_w, want_l);
    attn_status st = attn_sdpa_forward(ctx, op, nq ? q : NULL, nk ? k : NULL, nv ? v : NULL,
                                       m.mask, no ? a.o : NULL, a.w, a.l);
    expect_status(st, &m, 0, "attn_sdpa_forward");
    if (st != ATTN_OK) {
        expect_untouched(&a, "attn_sdpa_forward");
    } else {
        outs_make(&b, no, nw, nl, want_w, want_l);
        CHECK(attn_sdpa_forward(ctx, op, q, k, v, m.mask, b.o, b.w, b.l) == ATTN_OK, "rerun");
        expect_same_again(&a, &b, "attn_sdpa_forward");
        outs_free(&b);

        double sc = scale, gamma = (double)(D + 4) * 0x1p-24;
        double *l = xalloc((size_t)Lkv * sizeof *l), *le = xalloc((size_t)Lkv * sizeof *le);
        double *vd = to_double(v, nv);
        rowref rr;
        rowref_make(&rr, Lkv, Dv);
        for (int64_t bb = 0; bb < B; bb++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Lq; i++) {
                    int64_t g = h / G;
                    for (int64_t j = 0; j < Lkv; j++) {
                        double bias, dot = 0.0, mag = 0.0;
                        rr.vis[j] = (unsigned char)visible(&m, causal, Lq, Lkv, bb, h, i, j, &bias);
                        if (!rr.vis[j])
                            continue;
                        for (int64_t d = 0; d < D; d++) {
                            double x = q[layout ? ((bb * Lq + i) * Hq + h) * D + d
                                                : ((bb * Hq + h) * Lq + i) * D + d];
                            double y = k[layout ? ((bb * Lkv + j) * Hkv + g) * D + d
                                                : ((bb * Hkv + g) * Lkv + j) * D + d];
                            dot += x * y, mag += fabs(x * y);
                        }
                        l[j] = sc * dot + bias;
                        le[j] = gamma * (fabs(sc) * mag + fabs(bias));
                    }
                    int64_t v0 = layout ? (bb * Lkv * Hkv + g) * Dv : (bb * Hkv + g) * Lkv * Dv;
                    row_reference(&rr, Lkv, l, le, vd + v0, layout ? Hkv * Dv : Dv, Dv);
                    int64_t row = (bb * Hq + h) * Lq + i;
                    int64_t o0 = layout ? ((bb * Lq + i) * Hq + h) * Dv : row * Dv;
                    check_row("sdpa", &rr, Lkv, Dv, a.o + o0, 1, a.w ? a.w + row * Lkv : NULL,
                              a.l ? a.l + row : NULL, zero_nan_allowed(&p, &m, bb, g, Lkv));
                }
        rowref_free(&rr);
        free(l), free(le), free(vd);
    }
    outs_free(&a);
    const sdpa_dims dims = {B, Hq, Hkv, Lq, Lkv, D, Dv, layout};
    fuzz_sdpa_backward(r, ctx, op, &dims, q, k, v, &m, st, &p, huge);
    attn_context_destroy(ctx);
    free_mask(&m);
    free(q), free(k), free(v);
    attn_sdpa_destroy(op);
}

/* ---- multi-head attention --------------------------------------------------------- */

/* y[rows, out] = x[rows, in] Wᵀ + b in double (exact for the fuzzer's data). */
static double *project(const float *x, int64_t rows, int64_t in, const float *w, const float *b,
                       int64_t out)
{
    double *y = xalloc((size_t)(rows * out) * sizeof *y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t c = 0; c < in; c++)
                s += (double)x[r * in + c] * w[o * in + c];
            y[r * out + o] = s;
        }
    return y;
}

/* The layer's training pair after a successful forward: forward_train
 * gives the inference call's out bitwise (no dropout set), the backward
 * succeeds (self-attention: one shared buffer for the input gradients),
 * gives the same bits again on the same context, and its gradients are
 * finite when the inputs and out are; a backward after the parameters
 * changed is ATTN_ERR_STATE and writes nothing. */
typedef struct mha_dims {
    int64_t B, Lq, Lkv, E, KD, VD;
} mha_dims;

static void fuzz_mha_training(rd *r, attn_context *ctx, attn_mha *mha, const mha_dims *d,
                              const float *q, const float *k, const float *v, const fmask *m,
                              const float *out, int self, int finite_in)
{
    int64_t count = 0, nq = d->B * d->Lq * d->E, nk = d->B * d->Lkv * d->KD;
    int64_t nv = d->B * d->Lkv * d->VD;
    CHECK(attn_mha_param_count(mha, &count) == ATTN_OK, "param_count");
    float *params = xalloc((size_t)(count + 1) * sizeof *params);
    CHECK(attn_mha_get_params(mha, params) == ATTN_OK, "get_params");
    attn_activations *act = NULL;
    CHECK(attn_activations_create(&act) == ATTN_OK, "activations_create");
    float *out2 = xalloc((size_t)(nq + 1) * sizeof *out2);
    CHECK(attn_mha_forward_train(ctx, mha, d->B, d->Lq, d->Lkv, q, k, v, m->mask, out2, NULL,
                                 act) == ATTN_OK, "attn_mha_forward_train: %s", attn_last_error());
    CHECK(!memcmp(out, out2, (size_t)nq * sizeof *out), "forward_train's out differs");
    float *d_out = data(r, nq, 8, 1);
    outs g, g2;  /* o = d_query (shared in self-attention), w = d_key, l = d_value */
    outs_make(&g, nq, nk, nv, !self, !self);
    float *dp = xalloc((size_t)(count + 1) * sizeof *dp), *dp2 = xalloc((size_t)(count + 1) * 4);
    attn_status st = attn_mha_backward(ctx, mha, act, d_out, g.o, self ? g.o : g.w,
                                       self ? g.o : g.l, dp);
    CHECK(st == ATTN_OK, "attn_mha_backward: %s", attn_last_error());
    outs_make(&g2, nq, nk, nv, !self, !self);
    CHECK(attn_mha_backward(ctx, mha, act, d_out, g2.o, self ? g2.o : g2.w, self ? g2.o : g2.l,
                            dp2) == ATTN_OK, "backward rerun");
    expect_same_again(&g, &g2, "attn_mha_backward");
    CHECK(!memcmp(dp, dp2, (size_t)count * sizeof *dp), "attn_mha_backward: d_params differ");
    for (int64_t x = 0; x < nq && finite_in; x++)
        finite_in = isfinite(out[x]);
    float *all[4] = {g.o, g.w, g.l, dp};
    int64_t n[4] = {nq, g.w ? nk : 0, g.l ? nv : 0, count};
    for (int t = 0; t < 4 && finite_in; t++)
        for (int64_t x = 0; x < n[t]; x++)
            CHECK(isfinite(all[t][x]), "attn_mha_backward: gradient %d[%lld] = %g with finite "
                  "inputs", t, (long long)x, (double)all[t][x]);
    /* The parameters change: the activations are stale. */
    CHECK(attn_mha_set_params(mha, params) == ATTN_OK, "set_params");
    outs_free(&g2);
    outs_make(&g2, nq, nk, nv, !self, !self);
    CHECK(attn_mha_backward(ctx, mha, act, d_out, g2.o, self ? g2.o : g2.w, self ? g2.o : g2.l,
                            NULL) == ATTN_ERR_STATE, "backward after set_params");
    expect_untouched(&g2, "attn_mha_backward");
    outs_free(&g), outs_free(&g2);
    free(params), free(out2), free(d_out), free(dp), free(dp2);
    attn_activations_destroy(act);
}

static void fuzz_mha(rd *r)
{
    int64_t NH = (int64_t)1 << pick(r, 0, 2), hd = pick(r, 1, 8 / NH), E = NH * hd;
    int64_t NKV = (int64_t)1 << pick(r, 0, NH == 4 ? 2 : NH == 2 ? 1 : 0), kvd = NKV * hd;
    int64_t KD = pick(r, 1, 8), VD = pick(r, 1, 8);
    int bias = (int)pick(r, 0, 1);
    attn_mha *mha = SENTINEL;
    if (chance(r, 4)) { /* invalid shapes */
        int k = (int)pick(r, 0, 2);
        attn_status st = attn_mha_create(&mha, k == 0 && NH > 1 ? E + 1 : E, NH,
                                         k == 1 ? NH + 1 : NKV, KD, VD, k == 2 ? 2 : bias);
        attn_status want = k == 2 ? ATTN_ERR_INVALID_ARGUMENT
                                  : (k == 0 && NH == 1) ? ATTN_OK : ATTN_ERR_SHAPE_MISMATCH;
        CHECK(st == want, "mha_create invalid case %d: got %d", k, st);
        if (st == ATTN_OK)
            attn_mha_destroy(mha);
        else
            CHECK(mha == SENTINEL, "mha_create failed but wrote *mha");
        return;
    }
    CHECK(attn_mha_create(&mha, E, NH, NKV, KD, VD, bias) == ATTN_OK, "mha_create: %s",
          attn_last_error());
    const int64_t wsz[4] = {E * E, kvd * KD, kvd * VD, E * E}, bsz[4] = {E, kvd, kvd, E};
    float *w[4], *bb[4];
    int missing = 0;
    for (int p = 0; p < 4; p++) {
        w[p] = data(r, wsz[p], 16, 1), bb[p] = bias ? data(r, bsz[p], 16, 1) : NULL;
        if (chance(r, 3)) {
            missing = 1;
            continue;
        }
        if (chance(r, 2)) /* a wrong bias first: refused, the layer unchanged */
            CHECK(attn_mha_set_weights(mha, (attn_proj)p, w[p], bias ? NULL : w[p]) ==
                      (bias ? ATTN_ERR_NULL_POINTER : ATTN_ERR_INVALID_ARGUMENT),
                  "set_weights with a wrong bias");
        CHECK(attn_mha_set_weights(mha, (attn_proj)p, w[p], bb[p]) == ATTN_OK, "set_weights");
    }
    int causal = (int)pick(r, 0, 2);
    CHECK(attn_mha_set_causal(mha, (attn_causal)causal) == ATTN_OK, "set_causal");
    int64_t B = pick(r, 0, 3), Lq = length(r, 9, 140), Lkv = length(r, 12, 40);
    int self = KD == E && VD == E && chance(r, 30);
    if (self)
        Lkv = Lq;
    poison p;
    pick_poison(r, &p, 1, B, 1, 1, Lq, Lkv);
    if (self && p.tensor)
        p.tensor = 1, p.s = p.s < Lq ? p.s : 0;
    fmask m;
    make_mask(r, &m, B, NH, Lq, Lkv, 0, p.tensor == 0 && chance(r, 5));
    int64_t nq = B * Lq * E, nk = B * Lkv * KD, nv = B * Lkv * VD;
    int64_t no = B * Lq * E, nw = B * NH * Lq * Lkv;
    float *q = data(r, nq, 8, 1), *k = self ? q : data(r, nk, 8, 1), *v = self ? q : data(r, nv, 8, 1);
    apply_poison(&p, 1, q, 0, 1, Lq, E);
    if (!self) {
        apply_poison(&p, 2, k, 0, 1, Lkv, KD);
        apply_poison(&p, 3, v, 0, 1, Lkv, VD);
    }
    int want_w = chance(r, 60);
    attn_context *ctx = make_context(r);
    outs a, b;
    outs_make(&a, no, nw, 0, want_w, 0);
    attn_status st = attn_mha_forward(ctx, mha, B, Lq, Lkv, nq ? q : NULL, nk ? k : NULL,
                                      nv ? v : NULL, m.mask, no ? a.o : NULL, a.w);
    expect_status(st, &m, missing, "attn_mha_forward");
    if (st != ATTN_OK) {
        expect_untouched(&a, "attn_mha_forward");
    } else {
        outs_make(&b, no, nw, 0, want_w, 0);
        CHECK(attn_mha_forward(ctx, mha, B, Lq, Lkv, q, k, v, m.mask, b.o, b.w) == ATTN_OK,
              "rerun");
        expect_same_again(&a, &b, "attn_mha_forward");
        outs_free(&b);

        double *Q = project(q, B * Lq, E, w[0], bb[0], E);
        double *K = project(k, B * Lkv, KD, w[1], bb[1], kvd);
        double *V = project(v, B * Lkv, VD, w[2], bb[2], kvd);
        double sc = (float)(1.0 / sqrt((double)hd)), gamma = (double)(hd + 4) * 0x1p-24;
        double *l = xalloc((size_t)Lkv * sizeof *l), *le = xalloc((size_t)Lkv * sizeof *le);
        double *A = xalloc((size_t)E * sizeof *A), *At = xalloc((size_t)E * sizeof *At);
        /* the projected value of a poisoned value row is non-finite in every head */
        int vpoison = p.tensor == 3 || (self && p.tensor == 1);
        rowref rr;
        rowref_make(&rr, Lkv, hd);
        for (int64_t b0 = 0; b0 < B; b0++)
            for (int64_t i = 0; i < Lq; i++) {
                int may_nan = 0;
                for (int64_t h = 0; h < NH; h++) {
                    int64_t g = h / (NH / NKV);
                    for (int64_t j = 0; j < Lkv; j++) {
                        double bs, dot = 0.0, mag = 0.0;
                        rr.vis[j] = (unsigned char)visible(&m, causal, Lq, Lkv, b0, h, i, j, &bs);
                        if (!rr.vis[j])
                            continue;
                        for (int64_t d = 0; d < hd; d++) {
                            double x = Q[(b0 * Lq + i) * E + h * hd + d];
                            double y = K[(b0 * Lkv + j) * kvd + g * hd + d];
                            dot += x * y, mag += fabs(x * y);
                        }
                        l[j] = sc * dot + bs;
                        le[j] = gamma * (fabs(sc) * mag + fabs(bs));
                    }
                    row_reference(&rr, Lkv, l, le, V + b0 * Lkv * kvd + g * hd, kvd, hd);
                    int zn = vpoison && p.b == b0 && p.s < batch_limit(&m, b0, Lkv);
                    may_nan |= zn;
                    int64_t row = (b0 * NH + h) * Lq + i;
                    check_row("mha", &rr, Lkv, hd, NULL, 1, a.w ? a.w + row * Lkv : NULL, NULL,
                              zn);
                    for (int64_t d = 0; d < hd; d++)
                        A[h * hd + d] = rr.out[d], At[h * hd + d] = rr.tol[d];
                }
                for (int64_t o = 0; o < E; o++) { /* out = A Woᵀ + bo */
                    double s = bb[3] ? bb[3][o] : 0.0, t = 0.0, mag = fabs(s);
                    for (int64_t c = 0; c < E; c++) {
                        double wo = w[3][o * E + c];
                        s += A[c] * wo, t += fabs(wo) * At[c], mag += fabs(A[c] * wo);
                    }
                    t += FR_TOL * mag + FR_FLOOR;
                    if (!isfinite(s))
                        t = INFINITY;
                    float x = a.o[(b0 * Lq + i) * E + o];
                    CHECK(fr_accept(x, s, t) || (may_nan && isnan(x)),
                          "mha: out[%lld][%lld][%lld] = %.9g, reference %.9g ± %.3g",
                          (long long)b0, (long long)i, (long long)o, (double)x, s, t);
                }
            }
        rowref_free(&rr);
        free(Q), free(K), free(V), free(l), free(le), free(A), free(At);
        const mha_dims dims = {B, Lq, Lkv, E, KD, VD};
        if (!missing)
            fuzz_mha_training(r, ctx, mha, &dims, q, k, v, &m, a.o, self, p.tensor == 0);
    }
    outs_free(&a);
    attn_context_destroy(ctx);
    free_mask(&m);
    free(q);
    if (!self)
        free(k), free(v);
    for (int x = 0; x < 4; x++)
        free(w[x]), free(bb[x]);
    attn_mha_destroy(mha);
}

/* ---- additive attention -------------------------------------------------------------- */

static void fuzz_additive(rd *r)
{
    int64_t QD = pick(r, 1, 8), KD = pick(r, 1, 8), H = pick(r, 1, 16), DV = pick(r, 1, 8);
    attn_additive *op = SENTINEL;
    if (chance(r, 3)) {
        CHECK(attn_additive_create(&op, QD, 0, H) == ATTN_ERR_INVALID_ARGUMENT, "key_dim 0");
        CHECK(op == SENTINEL, "additive_create failed but wrote *op");
        return;
    }
    CHECK(attn_additive_create(&op, QD, KD, H) == ATTN_OK, "additive_create");
    float *wq = data(r, H * QD, 16, 1), *wk = data(r, H * KD, 16, 1), *wv = data(r, H, 8, 1);
    int missing = chance(r, 4);
    if (!missing) {
        if (chance(r, 3))
            CHECK(attn_additive_set_weights(op, wq, NULL, wv) == ATTN_ERR_NULL_POINTER, "w_k NULL");
        CHECK(attn_additive_set_weights(op, wq, wk, wv) == ATTN_OK, "set_weights");
    }
    int64_t B = pick(r, 0, 3), Lq = length(r, 9, 140), Lkv = length(r, 12, 40);
    poison p;
    pick_poison(r, &p, 1, B, 1, 1, Lq, Lkv);
    fmask m;
    make_mask(r, &m, B, 1, Lq, Lkv, 0, p.tensor == 0 && chance(r, 5));
    int64_t nq = B * Lq * QD, nk = B * Lkv * KD, nv = B * Lkv * DV, no = B * Lq * DV;
    int64_t nw = B * Lq * Lkv;
    float *q = data(r, nq, 8, 2), *k = data(r, nk, 8, 2), *v = data(r, nv, 8, 2);
    apply_poison(&p, 1, q, 0, 1, Lq, QD);
    apply_poison(&p, 2, k, 0, 1, Lkv, KD);
    apply_poison(&p, 3, v, 0, 1, Lkv, DV);
    int want_w = chance(r, 60);
    attn_context *ctx = make_context(r);
    outs a, b;
    outs_make(&a, no, nw, 0, want_w, 0);
    attn_status st = attn_additive_forward(ctx, op, B, Lq, Lkv, DV, nq ? q : NULL, nk ? k : NULL,
                                           nv ? v : NULL, m.mask, no ? a.o : NULL, a.w);
    expect_status(st, &m, missing, "attn_additive_forward");
    if (st != ATTN_OK) {
        expect_untouched(&a, "attn_additive_forward");
    } else {
        outs_make(&b, no, nw, 0, want_w, 0);
        CHECK(attn_additive_forward(ctx, op, B, Lq, Lkv, DV, q, k, v, m.mask, b.o, b.w) ==
                  ATTN_OK,
              "rerun");
        expect_same_again(&a, &b, "attn_additive_forward");
        outs_free(&b);

        double *qh = project(q, B * Lq, QD, wq, NULL, H), *kh = project(k, B * Lkv, KD, wk, NULL, H);
        double *vd = to_double(v, nv), gamma = (double)(H + 8) * 0x1p-24;
        double *l = xalloc((size_t)Lkv * sizeof *l), *le = xalloc((size_t)Lkv * sizeof *le);
        rowref rr;
        rowref_make(&rr, Lkv, DV);
        for (int64_t b0 = 0; b0 < B; b0++)
            for (int64_t i = 0; i < Lq; i++) {
                for (int64_t j = 0; j < Lkv; j++) {
                    double bs, s = 0.0, mag = 0.0;
                    rr.vis[j] = (unsigned char)visible(&m, 0, Lq, Lkv, b0, 0, i, j, &bs);
                    if (!rr.vis[j])
                        continue;
                    for (int64_t x = 0; x < H; x++) {
                        double t = tanh(qh[(b0 * Lq + i) * H + x] + kh[(b0 * Lkv + j) * H + x]);
                        s += wv[x] * t, mag += fabs(wv[x] * t);
                    }
                    l[j] = s + bs;
                    le[j] = gamma * (mag + fabs(bs));
                }
                row_reference(&rr, Lkv, l, le, vd + b0 * Lkv * DV, DV, DV);
                int64_t row = b0 * Lq + i;
                check_row("additive", &rr, Lkv, DV, a.o + row * DV, 1,
                          a.w ? a.w + row * Lkv : NULL, NULL, zero_nan_allowed(&p, &m, b0, 0, Lkv));
            }
        rowref_free(&rr);
        free(qh), free(kh), free(vd), free(l), free(le);
    }
    outs_free(&a);
    attn_context_destroy(ctx);
    free_mask(&m);
    free(q), free(k), free(v), free(wq), free(wk), free(wv);
    attn_additive_destroy(op);
}

/* ---- the Transformer encoder layer ------------------------------------------------------- */

/* Whether every one of n floats is finite. */
static int all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* The layer's training pair after the inference forward gave `out` (status
 * st): the training forward gives the same status (a failed one writes
 * nothing and leaves act empty: the backward is then ATTN_ERR_STATE); with
 * no dropout set, bitwise the inference out; again on the same context and
 * another act, the same bits. The backward succeeds, gives the same bits
 * twice, and its gradients are finite when src, the mask's biases and out
 * are; d_src overlapping d_out is refused and writes nothing; and a setter
 * call (set_params, set_causal or set_dropout, even to the same value) makes
 * act stale: ATTN_ERR_STATE, nothing written. */
typedef struct enc_dims {
    int64_t B, L, d, count;
    float p;            /* dropout */
    int causal;
} enc_dims;

static void fuzz_encoder_training(rd *r, attn_context *ctx, attn_encoder_layer *l,
                                  const enc_dims *e, const float *src, const fmask *m,
                                  attn_status st, const float *out, const float *params,
                                  int finite_in)
{
    const char *ff = "attn_encoder_layer_forward", *fb = "attn_encoder_layer_backward";
    int64_t n = e->B * e->L * e->d;
    attn_activations *act = NULL, *act2 = NULL;
    CHECK(attn_activations_create(&act) == ATTN_OK && attn_activations_create(&act2) == ATTN_OK,
          "activations_create");
    outs t, t2, g, g2;   /* t: out of training; g: o = d_src, w = d_params */
    outs_make(&t, n, 0, 0, 0, 0);
    attn_status ts = attn_encoder_layer_forward(ctx, l, e->B, e->L, n ? src : NULL, m->mask,
                                                n ? t.o : NULL, act);
    CHECK(ts == st, "%s: training gave %d, inference %d (%s)", ff, ts, st, attn_last_error());
    float *d_out = data(r, n, 8, 1);
    int want_src = chance(r, 80), want_params = chance(r, 80);
    outs_make(&g, n, e->count, 0, want_params, 0);
    if (ts != ATTN_OK) {
        expect_untouched(&t, ff);
        CHECK(attn_encoder_layer_backward(ctx, l, act, d_out, g.o, g.w) == ATTN_ERR_STATE,
              "%s: act of a failed training forward is not empty", fb);
        expect_untouched(&g, fb);
        goto done;
    }
    if (e->p == 0.0f)
        CHECK(!memcmp(t.o, out, (size_t)n * sizeof *out), "%s: training out differs from "
              "inference without dropout", ff);
    outs_make(&t2, n, 0, 0, 0, 0);
    CHECK(attn_encoder_layer_forward(ctx, l, e->B, e->L, src, m->mask, t2.o, act2) == ATTN_OK,
          "training rerun");
    expect_same_again(&t, &t2, ff);
    outs_free(&t2);

    attn_status bs = attn_encoder_layer_backward(ctx, l, act, d_out, want_src ? g.o : NULL, g.w);
    CHECK(bs == ATTN_OK, "%s: %d (%s)", fb, bs, attn_last_error());
    outs_make(&g2, n, e->count, 0, want_params, 0);
    CHECK(attn_encoder_layer_backward(ctx, l, act, d_out, want_src ? g2.o : NULL, g2.w) ==
              ATTN_OK, "backward rerun");
    if (!want_src) /* never written: compare the canaries */
        CHECK(!memcmp(g.o, g2.o, (size_t)n * 4), "%s: d_src NULL, but written", fb);
    expect_same_again(&g, &g2, fb);
    /* act2 holds the same forward: the same gradients from it */
    outs_free(&g2);
    outs_make(&g2, n, e->count, 0, want_params, 0);
    CHECK(attn_encoder_layer_backward(ctx, l, act2, d_out, want_src ? g2.o : NULL, g2.w) ==
              ATTN_OK, "backward on the second act");
    expect_same_again(&g, &g2, fb);
    outs_free(&g2);
    if (finite_in && all_finite(t.o, n)) {
        CHECK(!want_src || all_finite(g.o, n), "%s: d_src not finite with finite inputs", fb);
        CHECK(!g.w || all_finite(g.w, e->count), "%s: d_params not finite with finite inputs",
              fb);
    }
    /* d_src overlapping d_out: refused, nothing written */
    if (n > 1) {
        float *both = xalloc((size_t)(2 * n) * sizeof *both);
        memcpy(both, d_out, (size_t)n * sizeof *both);
        memset(both + n, CANARY, (size_t)n * sizeof *both);
        float *d_src = both + 1 + (int64_t)u8(r) % (n - 1);
        unsigned char *before = xalloc((size_t)(2 * n) * sizeof *both);
        memcpy(before, both, (size_t)(2 * n) * sizeof *both);
        CHECK(attn_encoder_layer_backward(ctx, l, act, both, d_src, NULL) ==
                  ATTN_ERR_INVALID_ARGUMENT, "%s: d_src overlapping d_out accepted", fb);
        CHECK(!memcmp(before, both, (size_t)(2 * n) * sizeof *both), "%s: refused overlap, "
              "but wrote", fb);
        free(before), free(both);
    }
    /* Any setter makes act stale. */
    int k = (int)pick(r, 0, 2);
    CHECK((k == 0   ? attn_encoder_layer_set_params(l, params)
           : k == 1 ? attn_encoder_layer_set_causal(l, (attn_causal)e->causal)
                    : attn_encoder_layer_set_dropout(l, e->p, 77)) == ATTN_OK, "setter %d", k);
    outs_make(&g2, n, e->count, 0, want_params, 0);
    CHECK(attn_encoder_layer_backward(ctx, l, act, d_out, g2.o, g2.w) == ATTN_ERR_STATE,
          "%s: act not stale after setter %d", fb, k);
    expect_untouched(&g2, fb);
    outs_free(&g2);
done:
    outs_free(&t), outs_free(&g);
    free(d_out);
    attn_activations_destroy(act), attn_activations_destroy(act2);
}

static void fuzz_encoder(rd *r)
{
    int64_t NH = (int64_t)1 << pick(r, 0, 2), hd = pick(r, 1, 8 / NH), d = NH * hd;
    int64_t FF = pick(r, 1, 16);
    int act_kind = (int)pick(r, 0, 1), pre = (int)pick(r, 0, 1);
    static const float eps_values[] = {1e-5f, 1e-3f, 0.5f};
    float eps = eps_values[pick(r, 0, 2)];
    attn_encoder_layer *l = SENTINEL;
    const char *fc = "attn_encoder_layer_create";
    if (chance(r, 4)) { /* invalid arguments */
        static const attn_status want[5] = {ATTN_ERR_SHAPE_MISMATCH, ATTN_ERR_INVALID_ARGUMENT,
                                            ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_INVALID_ARGUMENT,
                                            ATTN_ERR_INVALID_ARGUMENT};
        int k = (int)pick(r, 0, 4);
        static const float bad_eps[3] = {0.0f, NAN, INFINITY};
        attn_status st = attn_encoder_layer_create(&l, k == 0 ? NH + 1 : k == 4 ? 0 : d,
                                                   k == 0 ? NH + 2 : NH, FF,
                                                   k == 1 ? (attn_activation)2
                                                          : (attn_activation)act_kind,
                                                   k == 2 ? 2 : pre,
                                                   k == 3 ? bad_eps[pick(r, 0, 2)] : eps);
        CHECK(st == want[k], "%s invalid case %d: got %d", fc, k, st);
        CHECK(l == SENTINEL, "%s failed but wrote *layer", fc);
        CHECK(!strncmp(attn_last_error(), fc, strlen(fc)), "message");
        return;
    }
    CHECK(attn_encoder_layer_create(&l, d, NH, FF, (attn_activation)act_kind, pre, eps) ==
              ATTN_OK, "%s: %s", fc, attn_last_error());
    int64_t count = 0;
    CHECK(attn_encoder_layer_param_count(l, &count) == ATTN_OK &&
              count == 4 * d * d + 4 * d + 2 * d * FF + FF + d + 4 * d, "param_count %lld",
          (long long)count);
    float *params = data(r, count, 16, 1), *back = xalloc((size_t)count * sizeof *back);
    int missing = chance(r, 4);
    if (missing) {
        CHECK(attn_encoder_layer_get_params(l, back) == ATTN_ERR_STATE, "get_params unset");
    } else {
        CHECK(attn_encoder_layer_set_params(l, params) == ATTN_OK, "set_params");
        CHECK(attn_encoder_layer_get_params(l, back) == ATTN_OK &&
                  !memcmp(back, params, (size_t)count * sizeof *back), "get_params");
    }
    int causal = (int)pick(r, 0, 2);
    if (chance(r, 3))
        CHECK(attn_encoder_layer_set_causal(l, (attn_causal)3) == ATTN_ERR_INVALID_ARGUMENT,
              "set_causal 3");
    CHECK(attn_encoder_layer_set_causal(l, (attn_causal)causal) == ATTN_OK, "set_causal");
    static const float drops[] = {0.0f, 0.1f, 0.25f, 0.5f, 0.9f};
    float p = chance(r, 40) ? drops[pick(r, 0, 4)] : 0.0f;
    if (chance(r, 3)) {
        static const float bad_p[] = {1.0f, -0.1f, NAN, INFINITY};
        CHECK(attn_encoder_layer_set_dropout(l, bad_p[pick(r, 0, 3)], 1) ==
                  ATTN_ERR_INVALID_ARGUMENT, "set_dropout invalid p");
    }
    uint64_t seed = u8(r);
    seed = seed << 40 | u8(r);
    CHECK(attn_encoder_layer_set_dropout(l, p, seed) == ATTN_OK, "set_dropout");
    int64_t B = pick(r, 0, 3), L = length(r, 9, 140), n = B * L * d;
    poison pz;
    pick_poison(r, &pz, 1, B, 1, 1, L, L);
    if (pz.tensor)  /* src is the one input: its row (b, s) */
        pz.tensor = 1, pz.h = 0;
    fmask m;
    int poison_bias = pz.tensor == 0 && chance(r, 5);
    make_mask(r, &m, B, NH, L, L, 0, poison_bias);
    float *src = data(r, n, 8, 2);
    apply_poison(&pz, 1, src, 0, 1, L, d);
    attn_context *ctx = make_context(r);
    outs a, b;
    outs_make(&a, n, 0, 0, 0, 0);
    attn_status st = attn_encoder_layer_forward(ctx, l, B, L, n ? src : NULL, m.mask,
                                                n ? a.o : NULL, NULL);
    expect_status(st, &m, missing, "attn_encoder_layer_forward");
    int finite_in = pz.tensor == 0 && !poison_bias;
    if (st != ATTN_OK) {
        expect_untouched(&a, "attn_encoder_layer_forward");
    } else {
        outs_make(&b, n, 0, 0, 0, 0);
        CHECK(attn_encoder_layer_forward(ctx, l, B, L, src, m.mask, b.o, NULL) == ATTN_OK,
              "rerun");
        expect_same_again(&a, &b, "attn_encoder_layer_forward");
        /* in place: the same bits */
        memcpy(b.o, src, (size_t)n * sizeof *src);
        CHECK(attn_encoder_layer_forward(ctx, l, B, L, b.o, m.mask, b.o, NULL) == ATTN_OK,
              "in place");
        CHECK(!memcmp(a.o, b.o, (size_t)n * sizeof *b.o), "in place: out differs");
        outs_free(&b);
        if (n > 1) { /* out overlapping src without being it: refused, nothing written */
            float *both = xalloc((size_t)(2 * n) * sizeof *both);
            unsigned char *before = xalloc((size_t)(2 * n) * sizeof *both);
            memcpy(both, src, (size_t)n * sizeof *both);
            memset(both + n, CANARY, (size_t)n * sizeof *both);
            memcpy(before, both, (size_t)(2 * n) * sizeof *both);
            int64_t k = 1 + (int64_t)u8(r) % (n - 1);
            attn_status os = attn_encoder_layer_forward(ctx, l, B, L, both, m.mask, both + k,
                                                        NULL);
            CHECK(os == ATTN_ERR_INVALID_ARGUMENT, "attn_encoder_layer_forward: out = src + %lld "
                  "floats gave %d", (long long)k, os);
            CHECK(!memcmp(before, both, (size_t)(2 * n) * sizeof *both),
                  "attn_encoder_layer_forward: refused overlap, but wrote");
            free(before), free(both);
        }
        CHECK(!finite_in || all_finite(a.o, n), "attn_encoder_layer_forward: out not finite "
              "with finite inputs");
    }
    const enc_dims e = {B, L, d, count, p, causal};
    fuzz_encoder_training(r, ctx, l, &e, src, &m, st, a.o, params, finite_in);
    outs_free(&a);
    attn_context_destroy(ctx);
    free_mask(&m);
    free(src), free(params), free(back);
    attn_encoder_layer_destroy(l);
}

/* ---- Nadaraya–Watson ------------------------------------------------------------------- */

static void fuzz_nadaraya_watson(rd *r)
{
    static const float ws[] = {1.0f, 0.5f, 3.0f, -2.0f, 0.125f, 0.0f, 1e3f, 1e9f, 1e18f,
                               1e20f, 1e30f, NAN, INFINITY};
    int64_t nq = length(r, 9, 140), nk = length(r, 12, 40);
    float w = ws[pick(r, 0, sizeof ws / sizeof ws[0] - 1)];
    poison p;
    pick_poison(r, &p, 1, 1, 1, 1, nq, nk);
    float *q = data(r, nq, 8, 4), *k = data(r, nk, 8, 4), *v = data(r, nk, 8, 2);
    apply_poison(&p, 1, q, 0, 1, nq, 1);
    apply_poison(&p, 2, k, 0, 1, nk, 1);
    apply_poison(&p, 3, v, 0, 1, nk, 1);
    int want_w = chance(r, 60);
    attn_context *ctx = make_context(r);
    outs a, b;
    outs_make(&a, nq, nq * nk, 0, want_w, 0);
    attn_status st = attn_nadaraya_watson(ctx, nq, nk, nq ? q : NULL, nk ? k : NULL,
                                          nk ? v : NULL, w, nq ? a.o : NULL, a.w);
    if (!isfinite(w)) {
        CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "nadaraya_watson(w %g) gave %d", (double)w, st);
        expect_untouched(&a, "attn_nadaraya_watson");
    } else {
        CHECK(st == ATTN_OK, "nadaraya_watson: %d (%s)", st, attn_last_error());
        outs_make(&b, nq, nq * nk, 0, want_w, 0);
        CHECK(attn_nadaraya_watson(ctx, nq, nk, q, k, v, w, b.o, b.w) == ATTN_OK, "rerun");
        expect_same_again(&a, &b, "attn_nadaraya_watson");
        outs_free(&b);
        double *l = xalloc((size_t)nk * sizeof *l), *le = xalloc((size_t)nk * sizeof *le);
        double *vd = to_double(v, nk);
        rowref rr;
        rowref_make(&rr, nk, 1);
        for (int64_t i = 0; i < nq; i++) {
            for (int64_t j = 0; j < nk; j++) {
                double d = ((double)q[i] - k[j]) * w;
                rr.vis[j] = 1;
                l[j] = -0.5 * d * d;
                le[j] = 6.0 * 0x1p-24 * fabs(l[j]);
            }
            row_reference(&rr, nk, l, le, vd, 1, 1);
            /* Every key infinitely far (an infinite query, or a single key
             * that is infinite): attn.h fixes no value (inf − inf), only that
             * it reaches no other row, so a NaN row is as acceptable as the
             * zeros of a row with no visible key. */
            if (rr.kind == FR_EMPTY && nk > 0 && isnan(a.o[i])) {
                for (int64_t j = 0; a.w && j < nk; j++)
                    CHECK(isnan(a.w[i * nk + j]) || a.w[i * nk + j] == 0.0f,
                          "nadaraya-watson: every key infinitely far, NaN out, weight %g",
                          (double)a.w[i * nk + j]);
                continue;
            }
            check_row("nadaraya-watson", &rr, nk, 1, a.o + i, 1, a.w ? a.w + i * nk : NULL, NULL,
                      p.tensor == 3);
        }
        rowref_free(&rr);
        free(l), free(le), free(vd);
    }
    outs_free(&a);
    attn_context_destroy(ctx);
    free(q), free(k), free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    rd r = {buf, size, 0x5EED};
    for (size_t i = 0; i < size; i++) /* the data depend on the whole input */
        r.s = (r.s ^ buf[i]) * 1099511628211u;
    /* The first byte picks the operation: the seeds' 0-3 keep theirs, 4 is
     * the encoder layer, 5 the KV cache (fuzz_kv_cache.c; found inputs
     * whose first byte is 5 or more now decode to another, still valid,
     * problem). */
    switch (u8(&r) % 6) {
    case 0: fuzz_sdpa(&r); break;
    case 1: fuzz_mha(&r); break;
    case 2: fuzz_additive(&r); break;
    case 3: fuzz_nadaraya_watson(&r); break;
    case 4: fuzz_encoder(&r); break;
    default: fuzz_kv_cache(&r); break;
    }
    return 0;
}
