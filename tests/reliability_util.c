/*
 * reliability_util.c — see reliability_util.h. The layer references are
 * written from the formulas of attn.h, in double, with plain loops.
 */
#include "reliability_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *ru_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "reliability_util: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

float *ru_floats(int64_t n)
{
    float *p = ru_alloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    tu_fill_nan(p, (size_t)(n > 0 ? n : 1));
    return p;
}

double *ru_doubles(int64_t n)
{
    double *p = ru_alloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    memset(p, 0, (size_t)(n > 0 ? n : 1) * sizeof *p);
    return p;
}

/* ---- SDPA problems ------------------------------------------------------ */

void ru_sdpa_init(ru_sdpa *p, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lkv,
                  int64_t D, int64_t Dv, attn_layout layout, attn_causal causal, float scale,
                  uint64_t seed)
{
    tu_rng rng;
    memset(p, 0, sizeof *p);
    p->B = B, p->Hq = Hq, p->Hkv = Hkv, p->Lq = Lq, p->Lkv = Lkv, p->D = D, p->Dv = Dv;
    p->layout = layout, p->causal = causal, p->scale = scale;
    p->nq = B * Hq * Lq * D, p->nk = B * Hkv * Lkv * D, p->nv = B * Hkv * Lkv * Dv;
    p->no = B * Hq * Lq * Dv, p->nw = B * Hq * Lq * Lkv, p->nl = B * Hq * Lq;
    p->q = ru_floats(p->nq), p->k = ru_floats(p->nk), p->v = ru_floats(p->nv);
    tu_rng_seed(&rng, seed);
    tu_fill_normal(&rng, p->q, (size_t)p->nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->k, (size_t)p->nk, 0.0f, 1.0f);
    tu_fill_uniform(&rng, p->v, (size_t)p->nv, -2.0f, 2.0f);
    if (attn_mask_create(&p->mask) != ATTN_OK)
        abort();
}

void ru_sdpa_free(ru_sdpa *p)
{
    attn_mask_destroy(p->mask);
    free(p->q), free(p->k), free(p->v);
    memset(p, 0, sizeof *p);
}

attn_status ru_sdpa_lengths(ru_sdpa *p, const int64_t *lengths, int per_query)
{
    p->rm.lengths = lengths, p->rm.per_query = per_query;
    return attn_mask_set_kv_lengths(p->mask, lengths, p->B, p->Lq, per_query);
}

attn_status ru_sdpa_keep(ru_sdpa *p, const uint8_t *keep, int64_t mb, int64_t mh, int64_t mq)
{
    p->rm.keep = keep, p->rm.keep_b = mb, p->rm.keep_h = mh, p->rm.keep_q = mq;
    return attn_mask_set_bool(p->mask, keep, mb, mh, mq, p->Lkv);
}

attn_status ru_sdpa_bias(ru_sdpa *p, const float *bias, int64_t mb, int64_t mh, int64_t mq)
{
    p->rm.bias = bias, p->rm.bias_b = mb, p->rm.bias_h = mh, p->rm.bias_q = mq;
    return attn_mask_set_bias(p->mask, bias, mb, mh, mq, p->Lkv);
}

attn_status ru_sdpa_make_op(const ru_sdpa *p, attn_sdpa **op)
{
    attn_status st = attn_sdpa_create(op, p->B, p->Hq, p->Hkv, p->Lq, p->Lkv, p->D, p->Dv);
    if (st == ATTN_OK)
        st = attn_sdpa_set_layout(*op, p->layout);
    if (st == ATTN_OK)
        st = attn_sdpa_set_causal(*op, p->causal);
    if (st == ATTN_OK && p->scale != 0.0f)
        st = attn_sdpa_set_scale(*op, p->scale);
    return st;
}

attn_status ru_sdpa_run_on(attn_context *ctx, const attn_sdpa *op, const ru_sdpa *p, ru_out *r)
{
    r->out = ru_floats(p->no), r->w = ru_floats(p->nw), r->lse = ru_floats(p->nl);
    return attn_sdpa_forward(ctx, op, p->q, p->k, p->v, p->mask, r->out, r->w, r->lse);
}

attn_status ru_sdpa_run(const ru_sdpa *p, int threads, ru_out *r)
{
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st == ATTN_OK)
        st = attn_context_set_num_threads(ctx, threads);
    if (st == ATTN_OK)
        st = ru_sdpa_make_op(p, &op);
    if (st == ATTN_OK)
        st = ru_sdpa_run_on(ctx, op, p, r);
    else
        r->out = ru_floats(p->no), r->w = ru_floats(p->nw), r->lse = ru_floats(p->nl);
    if (st != ATTN_OK)
        fprintf(stderr, "ru_sdpa_run: %s: %s\n", attn_status_string(st), attn_last_error());
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    return st;
}

ref_shape ru_sdpa_shape(const ru_sdpa *p)
{
    double scale = p->scale != 0.0f ? (double)p->scale : (double)(float)(1.0 / sqrt((double)p->D));
    return (ref_shape){p->B, p->Hq, p->Hkv, p->Lq, p->Lkv, p->D, p->Dv, (int)p->layout,
                       (int)p->causal, scale, NULL};
}

int ru_sdpa_ref(const ru_sdpa *p, ru_ref *d)
{
    ref_shape s = ru_sdpa_shape(p);
    d->out = ru_doubles(p->no), d->w = ru_doubles(p->nw), d->lse = ru_doubles(p->nl);
    return ref_sdpa(&s, p->q, p->k, p->v, &p->rm, d->out, d->w, d->lse);
}

void ru_out_free(ru_out *r)
{
    free(r->out), free(r->w), free(r->lse);
    memset(r, 0, sizeof *r);
}

void ru_ref_free(ru_ref *d)
{
    free(d->out), free(d->w), free(d->lse);
    memset(d, 0, sizeof *d);
}

int64_t ru_out_row(const ru_sdpa *p, int64_t b, int64_t h, int64_t i)
{
    return ref_index((int)p->layout, p->Hq, p->Lq, p->Dv, b, h, i, 0);
}

/* ---- layer references ------------------------------------------------------ */

/* Whether key j is visible to query i of head h of batch row b, and its
 * bias (0 without one). */
static int visible(const ref_mask *m, attn_causal causal, int64_t Lq, int64_t Lkv, int64_t b,
                   int64_t h, int64_t i, int64_t j, double *bias)
{
    *bias = 0.0;
    if (causal == ATTN_CAUSAL_TOP_LEFT && j > i)
        return 0;
    if (causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + Lkv - Lq)
        return 0;
    if (!m)
        return 1;
    if (m->lengths && j >= (m->per_query ? m->lengths[b * Lq + i] : m->lengths[b]))
        return 0;
    if (m->keep) {
        int64_t x = (((m->keep_b == 1 ? 0 : b) * m->keep_h + (m->keep_h == 1 ? 0 : h)) *
                         m->keep_q + (m->keep_q == 1 ? 0 : i)) * Lkv + j;
        if (!m->keep[x])
            return 0;
    }
    if (m->bias) {
        int64_t x = (((m->bias_b == 1 ? 0 : b) * m->bias_h + (m->bias_h == 1 ? 0 : h)) *
                         m->bias_q + (m->bias_q == 1 ? 0 : i)) * Lkv + j;
        if (m->bias[x] == -INFINITY)
            return 0;
        *bias = m->bias[x];
    }
    return 1;
}

/* l[j] for visible j → softmax weights (0 for the others), NaN-aware as
 * ref_sdpa: a NaN logit makes the whole row NaN. No visible key: zeros. */
static void softmax_row(double *l, const unsigned char *vis, int64_t n)
{
    double m = -INFINITY, sum = 0.0;
    int nan = 0, any = 0;
    for (int64_t j = 0; j < n; j++)
        if (vis[j]) {
            any = 1;
            if (isnan(l[j]))
                nan = 1;
            else if (l[j] > m)
                m = l[j];
        }
    if (nan)
        m = NAN;
    for (int64_t j = 0; j < n; j++)
        if (vis[j]) {
            l[j] = exp(l[j] - m);
            sum += l[j];
        }
    for (int64_t j = 0; j < n; j++)
        l[j] = (any && vis[j]) ? l[j] / sum : 0.0;
}

/* y[r][o] = Σ_i x[r][i] W[o][i] + b[o], in double. */
static void linear(const float *x, int64_t rows, int64_t in_f, const float *W, const float *b,
                   int64_t out_f, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out_f; o++) {
            double s = b ? (double)b[o] : 0.0;
            for (int64_t i = 0; i < in_f; i++)
                s += (double)x[r * in_f + i] * W[o * in_f + i];
            y[r * out_f + o] = s;
        }
}

void ru_ref_mha(const ru_mha *m, int64_t batch, int64_t len_q, int64_t len_kv, const float *query,
                const float *key, const float *value, const ref_mask *mask, double *out,
                double *weights)
{
    int64_t E = m->embed, hd = E / m->heads, kvd = m->kv_heads * hd;
    int64_t group = m->heads / m->kv_heads, nq = batch * len_q, nkv = batch * len_kv;
    double scale = 1.0 / sqrt((double)hd);
    double *Q = ru_doubles(nq * E), *K = ru_doubles(nkv * kvd), *V = ru_doubles(nkv * kvd);
    double *A = ru_doubles(nq * E), *l = ru_doubles(len_kv);
    unsigned char *vis = ru_alloc((size_t)(len_kv > 0 ? len_kv : 1));
    linear(query, nq, E, m->w[0], m->b[0], E, Q);
    linear(key, nkv, m->kdim, m->w[1], m->b[1], kvd, K);
    linear(value, nkv, m->vdim, m->w[2], m->b[2], kvd, V);
    if (m->rope_dim > 0) {  /* queries at their aligned positions, key j at j */
        double *inv_freq = ru_doubles(m->rope_dim / 2);
        ref_rope_inv_freq(m->rope_base, m->rope_dim, inv_freq);
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t i = 0; i < len_q; i++)
                for (int64_t h = 0; h < m->heads; h++)
                    ref_rope_row(Q + (b * len_q + i) * E + h * hd, m->rope_style, m->rope_dim,
                                 inv_freq,
                                 (double)ref_aligned_position((int)m->causal, i, len_q, len_kv),
                                 0);
            for (int64_t j = 0; j < len_kv; j++)
                for (int64_t g = 0; g < m->kv_heads; g++)
                    ref_rope_row(K + (b * len_kv + j) * kvd + g * hd, m->rope_style,
                                 m->rope_dim, inv_freq, (double)j, 0);
        }
        free(inv_freq);
    }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < m->heads; h++)
            for (int64_t i = 0; i < len_q; i++) {
                int64_t g = h / group;
                const double *qr = Q + (b * len_q + i) * E + h * hd;
                int64_t p = ref_aligned_position((int)m->causal, i, len_q, len_kv);
                for (int64_t j = 0; j < len_kv; j++) {
                    double bias, dot = 0.0;
                    vis[j] = (unsigned char)(visible(mask, m->causal, len_q, len_kv, b, h, i, j,
                                                     &bias) &&
                                             ref_window_visible(m->mods, p, j));
                    if (!vis[j])
                        continue;
                    const double *kr = K + (b * len_kv + j) * kvd + g * hd;
                    for (int64_t d = 0; d < hd; d++)
                        dot += qr[d] * kr[d];
                    l[j] = ref_modified_logit(m->mods, h, p, j, scale * dot, bias, NULL);
                }
                softmax_row(l, vis, len_kv);
                double *ar = A + (b * len_q + i) * E + h * hd;
                for (int64_t d = 0; d < hd; d++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < len_kv; j++)
                        if (vis[j])
                            s += l[j] * V[(b * len_kv + j) * kvd + g * hd + d];
                    ar[d] = s;
                }
                if (weights)
                    memcpy(weights + ((b * m->heads + h) * len_q + i) * len_kv, l,
                           (size_t)len_kv * sizeof *l);
            }
    for (int64_t r = 0; r < nq; r++)
        for (int64_t o = 0; o < E; o++) {
            double s = m->b[3] ? (double)m->b[3][o] : 0.0;
            for (int64_t c = 0; c < E; c++)
                s += A[r * E + c] * m->w[3][o * E + c];
            out[r * E + o] = s;
        }
    free(Q), free(K), free(V), free(A), free(l), free(vis);
}

/* What the loss of ru_mha_self_grad_error reads. */
typedef struct self_loss {
    const ru_mha *m;
    int64_t batch, len;
    const float *x, *d_out;
} self_loss;

static double self_loss_of(void *arg)
{
    const self_loss *a = arg;
    int64_t n = a->batch * a->len * a->m->embed;
    double *out = ru_doubles(n), l = 0.0;
    ru_ref_mha(a->m, a->batch, a->len, a->len, a->x, a->x, a->x, NULL, out, NULL);
    for (int64_t i = 0; i < n; i++)
        l += (double)a->d_out[i] * out[i];
    free(out);
    return l;
}

double ru_mha_self_grad_error(const ru_mha *m, int64_t batch, int64_t len, float *x,
                              const float *d_out, const float *dx, int64_t *worst)
{
    self_loss a = {m, batch, len, x, d_out};
    double max = 0.0;
    *worst = 0;
    for (int64_t i = 0; i < batch * len * m->embed; i++) {
        double num = tu_central_difference(&x[i], 0x1p-10, self_loss_of, &a);
        double e = fabs(num - dx[i]) / (1.0 + fabs(num));
        if (e > max || isnan(e))
            max = e, *worst = i;
    }
    return max;
}

void ru_ref_additive(const ru_additive *a, int64_t batch, int64_t len_q, int64_t len_kv,
                     int64_t dim_v, const float *q, const float *k, const float *v,
                     const ref_mask *mask, double *out, double *weights)
{
    int64_t H = a->hidden;
    double *pq = ru_doubles(len_q * H), *pk = ru_doubles(len_kv * H), *l = ru_doubles(len_kv);
    unsigned char *vis = ru_alloc((size_t)(len_kv > 0 ? len_kv : 1));
    for (int64_t b = 0; b < batch; b++) {
        linear(q + b * len_q * a->qdim, len_q, a->qdim, a->wq, NULL, H, pq);
        linear(k + b * len_kv * a->kdim, len_kv, a->kdim, a->wk, NULL, H, pk);
        for (int64_t i = 0; i < len_q; i++) {
            for (int64_t j = 0; j < len_kv; j++) {
                double bias, s = 0.0;
                vis[j] = (unsigned char)visible(mask, ATTN_CAUSAL_NONE, len_q, len_kv, b, 0, i, j,
                                                &bias);
                if (!vis[j])
                    continue;
                for (int64_t h = 0; h < H; h++)
                    s += (double)a->wv[h] * tanh(pq[i * H + h] + pk[j * H + h]);
                l[j] = s + bias;
            }
            softmax_row(l, vis, len_kv);
            for (int64_t e = 0; e < dim_v; e++) {
                double s = 0.0;
                for (int64_t j = 0; j < len_kv; j++)
                    if (vis[j])
                        s += l[j] * v[(b * len_kv + j) * dim_v + e];
                out[(b * len_q + i) * dim_v + e] = s;
            }
            if (weights)
                memcpy(weights + (b * len_q + i) * len_kv, l, (size_t)len_kv * sizeof *l);
        }
    }
    free(pq), free(pk), free(l), free(vis);
}

/* ---- comparisons ------------------------------------------------------------ */

int ru_close(const char *what, const float *a, const double *r, int64_t n, int64_t row_len,
             double tol)
{
    int64_t at;
    double e = row_len > 0 ? tu_max_err(a, r, n, row_len, &at) : tu_max_err_lse(a, r, n, &at);
    if (e <= tol)
        return 1;
    fprintf(stderr, "%s: normalized error %.3g > %.3g at element %lld (libattn %.9g, "
                    "reference %.9g)\n",
            what, e, tol, (long long)at, (double)a[at], r[at]);
    return 0;
}

int ru_same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

int ru_same_bits(const char *what, const float *a, const float *b, int64_t n)
{
    for (int64_t x = 0; x < n; x++)
        if (!ru_same_float(a[x], b[x])) {
            fprintf(stderr, "%s: element %lld differs bitwise (%.9g vs %.9g)\n", what,
                    (long long)x, (double)a[x], (double)b[x]);
            return 0;
        }
    return 1;
}
