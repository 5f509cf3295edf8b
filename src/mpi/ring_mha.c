/*
 * ring_mha.c — the multi-head attention layer over a sequence split across
 * the ring's ranks (attn_mpi.h, "The MHA layer over the ring"). The
 * projections act on each row alone, so each rank projects its own rows;
 * only the attention needs the other ranks' keys and values, and that is
 * the SDPA ring (ring_forward.c, ring_backward.c) on the projected rows in
 * BSHD, with the layer's scale and causal setting. With X_q, X_k, X_v the
 * local inputs (D2L §10.5; Vaswani et al. 2017, §3.2.2):
 *
 *   Q = X_q Wqᵀ + bq,  K = X_k Wkᵀ + bk,  V = X_v Wvᵀ + bv   (local rows)
 *   A = ring attention of Q, K, V                            (every rank)
 *   out = A Woᵀ + bo                                         (local rows)
 *
 * and the backward is attn_mha_backward's chain rule (src/mha_train.c) on
 * the local rows, the ring backward for dQ, dK, dV, and one MPI_Allreduce
 * that sums each rank's part of d_params: the gradient of the layer over the
 * whole sequence, the same on every rank.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ring_internal.h"

/* The layer as the ring uses it: its sizes (attn_mha_get_property) and
 * where each projection lies in the flat parameter vector
 * (attn_mha_get_params' layout: Wq, Wk, Wv, [bq, bk, bv], Wo, [bo]). */
typedef struct mha_shape {
    int64_t embed, heads, kv_heads, head_dim, kdim, vdim, bias, causal;
    int64_t kv;                           /* kv_heads × head_dim */
    int64_t wq, wk, wv, bq, bk, bv, wo, bo, count;  /* offsets; biases -1 without */
} mha_shape;

/* What the training forward keeps, in one block: the layer's parameters,
 * copies of the local inputs, the projections, the attention output A and
 * its lse (the global ones of this rank's rows). */
struct attn_mpi_activations {
    float *mem;
    int64_t capacity;                     /* floats in mem */
    bool filled;
    const attn_mpi_ring *ring;            /* which ring filled it, and its sizes: */
    int64_t ring_sizes[5];                /* batch, seq_len, ranks, rank, local length */
    mha_shape shape;
    int64_t rows;                         /* batch × this rank's length */
    float *params, *query, *key, *value, *qp, *kp, *vp, *ap, *lse;
};

attn_status attn_mpi_activations_create(attn_mpi_activations **act)
{
    if (!act)
        return attn_set_error(ATTN_ERR_NULL_POINTER, "attn_mpi_activations_create",
                              "act is NULL");
    attn_mpi_activations *a = calloc(1, sizeof *a);
    if (!a)
        return attn_set_error(ATTN_ERR_OUT_OF_MEMORY, "attn_mpi_activations_create",
                              "cannot allocate the activations");
    *act = a;
    return ATTN_OK;
}

void attn_mpi_activations_destroy(attn_mpi_activations *act)
{
    if (act)
        free(act->mem);
    free(act);
}

/* ---- the layer ------------------------------------------------------------ */

static void shape_offsets(mha_shape *s)
{
    int64_t at = 0;
    s->wq = at, at += s->embed * s->embed;
    s->wk = at, at += s->kv * s->kdim;
    s->wv = at, at += s->kv * s->vdim;
    s->bq = s->bias ? at : -1, at += s->bias ? s->embed : 0;
    s->bk = s->bias ? at : -1, at += s->bias ? s->kv : 0;
    s->bv = s->bias ? at : -1, at += s->bias ? s->kv : 0;
    s->wo = at, at += s->embed * s->embed;
    s->bo = s->bias ? at : -1, at += s->bias ? s->embed : 0;
    s->count = at;
}

/* Reads the layer's sizes and checks that the ring can run it: its heads
 * and head_dim are the ring's, and it has no setting the ring cannot
 * honour (window, softcap, ALiBi, RoPE, dropout). */
static attn_status layer_read(const attn_mpi_ring *ring, const attn_mha *mha, mha_shape *s,
                              const char *f)
{
    if (!mha)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    static const attn_mha_property what[] = {
        ATTN_MHA_EMBED_DIM, ATTN_MHA_NUM_HEADS, ATTN_MHA_NUM_KV_HEADS, ATTN_MHA_HEAD_DIM,
        ATTN_MHA_KDIM, ATTN_MHA_VDIM, ATTN_MHA_BIAS, ATTN_MHA_CAUSAL,
        ATTN_MHA_HAS_MODIFIERS, ATTN_MHA_HAS_ROPE, ATTN_MHA_HAS_DROPOUT};
    int64_t v[sizeof what / sizeof what[0]];
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++)
        if (attn_mha_get_property(mha, what[i], &v[i]) != ATTN_OK)
            return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "mha: %s", attn_last_error());
    *s = (mha_shape){.embed = v[0], .heads = v[1], .kv_heads = v[2], .head_dim = v[3],
                     .kdim = v[4], .vdim = v[5], .bias = v[6], .causal = v[7]};
    s->kv = s->kv_heads * s->head_dim;
    shape_offsets(s);
    if (s->heads != ring->heads_q || s->kv_heads != ring->heads_kv ||
        s->head_dim != ring->dim_qk || s->head_dim != ring->dim_v)
        return ring_fail(ATTN_ERR_SHAPE_MISMATCH, f, "mha has num_heads %lld, num_kv_heads "
                         "%lld, head_dim %lld; the ring heads_q %lld, heads_kv %lld, dim_qk "
                         "%lld, dim_v %lld", (long long)s->heads, (long long)s->kv_heads,
                         (long long)s->head_dim, (long long)ring->heads_q,
                         (long long)ring->heads_kv, (long long)ring->dim_qk,
                         (long long)ring->dim_v);
    static const char *const unsupported[] = {"a window, softcap or ALiBi", "RoPE",
                                              "dropout"};
    for (int i = 0; i < 3; i++)
        if (v[8 + i])
            return ring_fail(ATTN_ERR_UNSUPPORTED, f, "mha has %s set, which the ring does "
                             "not apply", unsupported[i]);
    return ATTN_OK;
}

/* FNV-1a over the layer's sizes, settings and parameters: what every rank
 * must share, compared in the ranks' agreement. */
static uint64_t fingerprint_of(const mha_shape *s, const float *params)
{
    uint64_t h = 0xcbf29ce484222325u;
    const unsigned char *bytes[2] = {(const unsigned char *)s, (const unsigned char *)params};
    size_t n[2] = {sizeof *s, (size_t)s->count * sizeof(float)};
    for (int part = 0; part < 2; part++)
        for (size_t i = 0; i < n[part]; i++)
            h = (h ^ bytes[part][i]) * 0x100000001b3u;
    return h;
}

/* ---- the local products ---------------------------------------------------- */

/* y [rows, out] = x [rows, in] · Wᵀ + b (b NULL: none). */
static void project(const float *x, int64_t rows, int64_t in, const float *w, const float *b,
                    int64_t out, float *y)
{
    if (b)
        for (int64_t i = 0; i < rows; i++)
            memcpy(y + i * out, b, (size_t)out * sizeof(float));
    ring_gemm(false, true, rows, out, in, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

/* sums [cols] = Σ over rows of x [rows, cols], accumulated in double in
 * acc [cols] (the caller's, allocated before the ring runs: nothing may
 * fail once the ranks have agreed). */
static void column_sums(const float *x, int64_t rows, int64_t cols, double *acc, float *sums)
{
    memset(acc, 0, (size_t)cols * sizeof *acc);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            acc[j] += x[i * cols + j];
    for (int64_t j = 0; j < cols; j++)
        sums[j] = (float)acc[j];
}

/* The ring the layer's attention runs on: the caller's shards and
 * communicator, with BSHD (the projections' rows), the layer's scale
 * 1/sqrt(head_dim) (as attn_mha_forward) and its causal setting. */
static attn_mpi_ring layer_ring(const attn_mpi_ring *ring, const mha_shape *s)
{
    attn_mpi_ring view = *ring;
    view.layout = ATTN_LAYOUT_BSHD;
    view.scale = (float)(1.0 / sqrt((double)s->head_dim));
    view.causal = s->causal != ATTN_CAUSAL_NONE;
    return view;
}

/* ---- the forward ----------------------------------------------------------- */

/* What tells a ring apart beyond its address (a ring made after another
 * was destroyed may get its address). */
static void ring_sizes_of(const attn_mpi_ring *ring, int64_t out[5])
{
    out[0] = ring->batch, out[1] = ring->seq_len, out[2] = ring->size, out[3] = ring->rank;
    out[4] = ring_len(ring, ring->rank);
}

/* Points act's arrays into one block that it grows as needed; the copy of
 * query, key or value only where keep[0], keep[1] or keep[2] (training; an
 * input passed twice is kept once). */
static attn_status act_reserve(attn_mpi_activations *act, const mha_shape *s, int64_t rows,
                               int64_t lse_len, const bool keep[3], const char *f)
{
    const int64_t per_row[] = {0, s->embed, s->kdim, s->vdim, s->embed, s->kv, s->kv, s->embed,
                               0};
    int64_t sizes[] = {s->count, 0, 0, 0, 0, 0, 0, 0, lse_len};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        bool kept = i < 1 || i > 3 || keep[i - 1];
        if (per_row[i] > 0 && kept && __builtin_mul_overflow(rows, per_row[i], &sizes[i]))
            return ring_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the activations' size overflows");
        if (__builtin_add_overflow(total, sizes[i], &total) || total > INT64_MAX / 8)
            return ring_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the activations' size overflows");
    }
    if (total > act->capacity) {
        float *mem = malloc((size_t)total * sizeof(float));
        if (!mem)
            return ring_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the activations "
                             "(%lld floats)", (long long)total);
        free(act->mem);
        act->mem = mem;
        act->capacity = total;
    }
    float **slots[] = {&act->params, &act->query, &act->key, &act->value, &act->qp, &act->kp,
                       &act->vp, &act->ap, &act->lse};
    float *at = act->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        *slots[i] = at, at += sizes[i];
    act->shape = *s;
    act->rows = rows;
    return ATTN_OK;
}

/* The forward's checks on this rank, and its buffers (in act, or in tmp
 * for inference). */
static attn_status forward_prepare(attn_context *ctx, const attn_mpi_ring *ring,
                                   const attn_mha *mha, const float *const in[3],
                                   const float *out, attn_mpi_activations *keep, bool training,
                                   const char *f)
{
    mha_shape s;
    attn_status st = layer_read(ring, mha, &s, f);
    if (st != ATTN_OK)
        return st;
    const int64_t rows = ring->batch * ring_len(ring, ring->rank);
    static const char *const names[] = {"query", "key", "value"};
    if (!ctx)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    for (int i = 0; i < 3 && rows > 0; i++)
        if (!in[i])
            return ring_fail(ATTN_ERR_NULL_POINTER, f, "%s is NULL", names[i]);
    if (rows > 0 && !out)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "out is NULL");
    /* Self-attention passes one input thrice: one copy serves. */
    const bool same_key = in[1] == in[0] && s.kdim == s.embed;
    const bool same_value = in[2] == in[0] && s.vdim == s.embed;
    const bool kept[3] = {training, training && !same_key, training && !same_value};
    st = act_reserve(keep, &s, rows, ring->batch * ring->heads_q * ring_len(ring, ring->rank),
                     kept, f);
    if (st != ATTN_OK)
        return st;
    if (attn_mha_get_params(mha, keep->params) != ATTN_OK)
        return ring_fail(ATTN_ERR_STATE, f, "mha: %s", attn_last_error());
    const int64_t n_in[3] = {rows * s.embed, rows * s.kdim, rows * s.vdim};
    float *copies[3] = {keep->query, keep->key, keep->value};
    for (int i = 0; i < 3; i++)
        if (kept[i] && n_in[i] > 0)
            memcpy(copies[i], in[i], (size_t)n_in[i] * sizeof(float));
    if (training && same_key)
        keep->key = keep->query;
    if (training && same_value)
        keep->value = keep->query;
    return ATTN_OK;
}

attn_status attn_mpi_ring_mha_forward(attn_context *ctx, const attn_mpi_ring *ring,
                                      const attn_mha *mha, const float *query, const float *key,
                                      const float *value, float *out, attn_mpi_activations *act)
{
    static const char *f = "attn_mpi_ring_mha_forward";
    if (!ring)  /* no communicator to agree over: this rank fails alone */
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    attn_mpi_activations tmp = {0};
    attn_mpi_activations *keep = act ? act : &tmp;
    keep->filled = false;
    const float *in[3] = {query, key, value};
    attn_status st = forward_prepare(ctx, ring, mha, in, out, keep, act != NULL, f);
    const mha_shape *s = &keep->shape;
    const int64_t rows = keep->rows;
    const float *p = keep->params;
    ring_caller caller = {f, st, st == ATTN_OK ? fingerprint_of(s, p) : 0};
    if (st == ATTN_OK) {
        project(query, rows, s->embed, p + s->wq, s->bias ? p + s->bq : NULL, s->embed,
                keep->qp);
        project(key, rows, s->kdim, p + s->wk, s->bias ? p + s->bk : NULL, s->kv, keep->kp);
        project(value, rows, s->vdim, p + s->wv, s->bias ? p + s->bv : NULL, s->kv, keep->vp);
    }
    attn_mpi_ring view = layer_ring(ring, s);
    st = ring_forward_run(ctx, &view, keep->qp, keep->kp, keep->vp, keep->ap, keep->lse,
                          &caller);
    if (st == ATTN_OK) {
        project(keep->ap, rows, s->embed, p + s->wo, s->bias ? p + s->bo : NULL, s->embed,
                out);
        keep->filled = act != NULL;
        keep->ring = ring;
        ring_sizes_of(ring, keep->ring_sizes);
    }
    free(tmp.mem);
    return st;
}

/* ---- the backward ---------------------------------------------------------- */

/* Whether [a, a + na) and [b, b + nb) floats share memory. */
static bool overlap(const float *a, int64_t na, const float *b, int64_t nb)
{
    if (!a || !b || na == 0 || nb == 0)
        return false;
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + (uintptr_t)nb * sizeof(float) && b0 < a0 + (uintptr_t)na * sizeof(float);
}

/* The outputs of a backward: NULL, or disjoint from d_out and from each
 * other, but for d_query, d_key and d_value which may be the same pointer
 * (self-attention) when they have the same features. */
static attn_status check_outputs(const mha_shape *s, int64_t rows, const float *d_out,
                                 float *const grads[4], const char *f)
{
    static const char *const names[] = {"d_query", "d_key", "d_value", "d_params"};
    const int64_t n[4] = {rows * s->embed, rows * s->kdim, rows * s->vdim, s->count};
    for (int i = 0; i < 4; i++) {
        if (overlap(grads[i], n[i], d_out, rows * s->embed))
            return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "%s overlaps d_out", names[i]);
        for (int j = 0; j < i; j++) {
            bool same = grads[i] == grads[j] && i < 3 && n[i] == n[j];
            if (!same && overlap(grads[i], n[i], grads[j], n[j]))
                return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "%s overlaps %s%s", names[i],
                                 names[j], i < 3 && grads[i] == grads[j]
                                               ? " and their sizes differ" : "");
        }
    }
    return ATTN_OK;
}

/* The backward's checks on this rank: act filled by a forward of this ring
 * and of this layer as it is now. */
static attn_status backward_check(attn_context *ctx, const attn_mpi_ring *ring,
                                  const attn_mha *mha, const attn_mpi_activations *act,
                                  const float *d_out, float *const grads[4], const char *f)
{
    mha_shape s;
    attn_status st = layer_read(ring, mha, &s, f);
    if (st != ATTN_OK)
        return st;
    if (!ctx)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!act)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "act is NULL");
    if (!act->filled)
        return attn_set_error(ATTN_ERR_STATE, f, "act is empty: no attn_mpi_ring_mha_forward "
                              "with act has succeeded since it was made or last failed");
    int64_t sizes[5];
    ring_sizes_of(ring, sizes);
    if (act->ring != ring || memcmp(sizes, act->ring_sizes, sizeof sizes) != 0)
        return attn_set_error(ATTN_ERR_STATE, f, "act was filled with another ring");
    if (memcmp(&act->shape, &s, sizeof s) != 0)
        return attn_set_error(ATTN_ERR_STATE, f, "act was filled by another layer, or mha's "
                              "settings changed since");
    float *now = ring_floats(s.count);
    if (!now)
        return attn_set_error(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the parameters");
    if (attn_mha_get_params(mha, now) != ATTN_OK)
        st = ring_fail(ATTN_ERR_STATE, f, "mha: %s", attn_last_error());
    else if (memcmp(now, act->params, (size_t)s.count * sizeof(float)) != 0)
        st = attn_set_error(ATTN_ERR_STATE, f, "mha's parameters changed since the forward "
                            "that filled act");
    free(now);
    if (st != ATTN_OK)
        return st;
    if (act->rows > 0 && !d_out)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "d_out is NULL");
    return check_outputs(&s, act->rows, d_out, grads, f);
}

/* d_params [count] = this rank's part of the parameters' gradient: the
 * products of attn_mha_backward's chain rule over the local rows; acc
 * holds max(embed_dim, kv) doubles for the biases. */
static void local_param_grads(const attn_mpi_activations *act, const float *d_out,
                              const float *const d_proj[3], double *acc, float *d)
{
    const mha_shape *s = &act->shape;
    const int64_t rows = act->rows;
    ring_gemm(true, false, s->embed, s->embed, rows, d_proj[0], s->embed, act->query, s->embed,
              0.0f, d + s->wq, s->embed);
    ring_gemm(true, false, s->kv, s->kdim, rows, d_proj[1], s->kv, act->key, s->kdim, 0.0f,
              d + s->wk, s->kdim);
    ring_gemm(true, false, s->kv, s->vdim, rows, d_proj[2], s->kv, act->value, s->vdim, 0.0f,
              d + s->wv, s->vdim);
    ring_gemm(true, false, s->embed, s->embed, rows, d_out, s->embed, act->ap, s->embed, 0.0f,
              d + s->wo, s->embed);
    if (s->bias) {
        column_sums(d_proj[0], rows, s->embed, acc, d + s->bq);
        column_sums(d_proj[1], rows, s->kv, acc, d + s->bk);
        column_sums(d_proj[2], rows, s->kv, acc, d + s->bv);
        column_sums(d_out, rows, s->embed, acc, d + s->bo);
    }
}

/* d_query, d_key, d_value = dQ·Wq, dK·Wk, dV·Wv; a pointer passed twice
 * (self-attention) receives the sum. */
static void input_grads(const attn_mpi_activations *act, const float *const d_proj[3],
                        float *const grads[4])
{
    const mha_shape *s = &act->shape;
    const float *p = act->params;
    const int64_t in[3] = {s->embed, s->kdim, s->vdim}, out[3] = {s->embed, s->kv, s->kv};
    const int64_t w[3] = {s->wq, s->wk, s->wv};
    for (int i = 0; i < 3; i++) {
        if (!grads[i])
            continue;
        bool accumulate = (i > 0 && grads[i] == grads[0]) || (i > 1 && grads[i] == grads[1]);
        ring_gemm(false, false, act->rows, in[i], out[i], d_proj[i], out[i], p + w[i], in[i],
                  accumulate ? 1.0f : 0.0f, grads[i], in[i]);
    }
}

attn_status attn_mpi_ring_mha_backward(attn_context *ctx, const attn_mpi_ring *ring,
                                       const attn_mha *mha, const attn_mpi_activations *act,
                                       const float *d_out, float *d_query, float *d_key,
                                       float *d_value, float *d_params)
{
    static const char *f = "attn_mpi_ring_mha_backward";
    if (!ring)  /* no communicator to agree over: this rank fails alone */
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    float *const grads[4] = {d_query, d_key, d_value, d_params};
    attn_status st = backward_check(ctx, ring, mha, act, d_out, grads, f);
    float *d_a = NULL, *d_proj[3] = {NULL, NULL, NULL};
    double *acc = NULL;
    if (st == ATTN_OK) {
        const mha_shape *s = &act->shape;
        d_a = ring_floats(act->rows * s->embed);
        d_proj[0] = ring_floats(act->rows * s->embed);
        d_proj[1] = ring_floats(act->rows * s->kv);
        d_proj[2] = ring_floats(act->rows * s->kv);
        acc = malloc((size_t)(s->embed > s->kv ? s->embed : s->kv) * sizeof *acc);
        if (!d_a || !d_proj[0] || !d_proj[1] || !d_proj[2] || !acc)
            st = ring_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the gradients' "
                           "buffers");
    }
    /* Every rank must ask for d_params alike: its sum is collective. */
    ring_caller caller = {f, st, 0};
    mha_shape shape = {0};
    ring_backward_inputs in = {0};
    if (st == ATTN_OK) {
        shape = act->shape;
        caller.fingerprint = fingerprint_of(&shape, act->params) ^ (d_params ? 1u : 0u);
        /* dA = dOut · Wo */
        ring_gemm(false, false, act->rows, shape.embed, shape.embed, d_out, shape.embed,
                  act->params + shape.wo, shape.embed, 0.0f, d_a, shape.embed);
        in = (ring_backward_inputs){act->qp, act->kp, act->vp, act->ap, act->lse, d_a};
    }
    attn_mpi_ring view = layer_ring(ring, &shape);
    st = ring_backward_run(ctx, &view, &in, d_proj[0], d_proj[1], d_proj[2], &caller);
    /* Nothing below can fail but the sum, after which the outputs are
     * unspecified (the header): every rank that agreed reaches it. */
    if (st == ATTN_OK && d_params) {
        local_param_grads(act, d_out, (const float *const *)d_proj, acc, d_params);
        st = ring_allreduce_sum(ring->comm, d_params, shape.count, f);
    }
    if (st == ATTN_OK)
        input_grads(act, (const float *const *)d_proj, grads);
    free(acc);
    free(d_a);
    for (int i = 0; i < 3; i++)
        free(d_proj[i]);
    return st;
}
