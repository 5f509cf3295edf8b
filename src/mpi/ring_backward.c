/*
 * ring_backward.c — ring attention backward (attn_mpi.h): the forward's P
 * steps again, each an attn_sdpa_backward of this rank's queries against
 * the shard in hand, with the *global* out and lse (zhuzilin/ring-flash-
 * attention; never the merge's derivative: the shard's softmax is exp(logits
 * − lse) with the global lse, and D = Σ dO ∘ O with the global out). The
 * queries' gradient stays here; the shard's dK and dV travel with it, each
 * rank adding its part, and reach their owner one hop after the last step.
 */
#include <stdlib.h>
#include <string.h>

#include "ring_internal.h"

typedef struct backward_plan {
    float *shards[2];     /* keys and values in hand and arriving */
    float *grads[2];      /* their dK, dV: the one being added to and the one arriving */
    float *d_shard;       /* one step's dK and dV of the shard in hand */
    float *d_q_part;      /* one step's dQ */
    float *d_q_own;       /* the dQ accumulator when the caller passes none */
    /* The second chunk's rows (causal rings): q, out, d_out, lse. */
    float *q_b, *out_b, *d_out_b, *lse_b;
    ring_steps steps;     /* the op of each source rank's step */
} backward_plan;

static void plan_free(const attn_mpi_ring *ring, backward_plan *p)
{
    ring_steps_free(ring, &p->steps);
    float *bufs[] = {p->shards[0], p->shards[1], p->grads[0], p->grads[1], p->d_shard,
                     p->d_q_part, p->d_q_own, p->q_b, p->out_b, p->d_out_b, p->lse_b};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static attn_status plan_make(const attn_mpi_ring *ring, bool need_d_q, backward_plan *p,
                             const char *f)
{
    const int r = ring->rank;
    const int64_t rows = ring->batch * ring->heads_q * ring_len(ring, r);
    const int64_t rows_b = ring->batch * ring->heads_q * ring->chunk_b[r];
    const int64_t shard = ring_shard_capacity(ring), later = ring->size > 1 ? shard : 0;
    memset(p, 0, sizeof *p);
    p->shards[0] = ring_floats(shard), p->shards[1] = ring_floats(later);
    p->grads[0] = ring_floats(shard), p->grads[1] = ring_floats(later);
    p->d_shard = ring_floats(shard);
    p->d_q_part = ring_floats(rows * ring->dim_qk);
    p->d_q_own = need_d_q ? ring_floats(rows * ring->dim_qk) : NULL;
    p->q_b = ring_floats(rows_b * ring->dim_qk);
    p->out_b = ring_floats(rows_b * ring->dim_v);
    p->d_out_b = ring_floats(rows_b * ring->dim_v);
    p->lse_b = ring_floats(rows_b);
    if (!p->shards[0] || !p->shards[1] || !p->grads[0] ||
        !p->grads[1] || !p->d_shard || !p->d_q_part || (need_d_q && !p->d_q_own) || !p->q_b ||
        !p->out_b || !p->d_out_b || !p->lse_b)
        return ring_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the ring's buffers");
    return ring_steps_make(ring, &p->steps, f);
}

/* The second chunk's rows of q, out, d_out and lse, for the steps whose
 * shard only they see (STEP_QUERY_SUFFIX). */
static void copy_second_chunk(const attn_mpi_ring *ring, const backward_plan *p,
                              const float *q, const float *out, const float *d_out,
                              const float *lse)
{
    const int r = ring->rank;
    const int64_t len = ring_len(ring, r), la = ring->chunk_a[r], lb = ring->chunk_b[r];
    const int64_t hq = ring->heads_q, dqk = ring->dim_qk, dv = ring->dim_v, b = ring->batch;
    const attn_layout lay = ring->layout;
    ring_view from_q = {(float *)q, hq, len, dqk, lay, b}, to_q = {p->q_b, hq, lb, dqk, lay, b};
    ring_view from_o = {(float *)out, hq, len, dv, lay, b}, to_o = {p->out_b, hq, lb, dv, lay, b};
    ring_view from_d = {(float *)d_out, hq, len, dv, lay, b};
    ring_view to_d = {p->d_out_b, hq, lb, dv, lay, b};
    /* lse is [batch, heads_q, len] in every layout: BHSD rows of one float. */
    ring_view from_l = {(float *)lse, hq, len, 1, ATTN_LAYOUT_BHSD, b};
    ring_view to_l = {p->lse_b, hq, lb, 1, ATTN_LAYOUT_BHSD, b};
    rows_copy(&from_q, la, &to_q);
    rows_copy(&from_o, la, &to_o);
    rows_copy(&from_d, la, &to_d);
    rows_copy(&from_l, la, &to_l);
}

typedef struct backward_io {
    const float *q, *out, *lse, *d_out;
    float *d_q;  /* the accumulator */
} backward_io;

/* One step: the gradients of this rank's queries against the shard of
 * `source` (keys and values in `shard`), into the dQ accumulator (written
 * at the first step, added to later) and the shard's d_shard. */
static attn_status backward_step(attn_context *ctx, const attn_mpi_ring *ring,
                                 const backward_plan *p, int source, bool first,
                                 const backward_io *io, const float *shard)
{
    const int r = ring->rank;
    const int64_t len = ring_len(ring, r);
    const int64_t nk = ring->batch * ring->heads_kv * ring_len(ring, source) * ring->dim_qk;
    const float *keys = shard, *values = shard + nk;
    float *d_keys = p->d_shard, *d_values = p->d_shard + nk;
    attn_sdpa *op = p->steps.ops[source];
    attn_mask *mask = p->steps.masks[source];
    if (first)
        return attn_sdpa_backward(ctx, op, io->q, keys, values, mask, io->out, io->lse,
                                  io->d_out, io->d_q, d_keys, d_values);
    bool suffix = ring_step_kind(ring, source) == STEP_QUERY_SUFFIX;
    attn_status st = suffix
        ? attn_sdpa_backward(ctx, op, p->q_b, keys, values, mask, p->out_b, p->lse_b,
                             p->d_out_b, p->d_q_part, d_keys, d_values)
        : attn_sdpa_backward(ctx, op, io->q, keys, values, mask, io->out, io->lse, io->d_out,
                             p->d_q_part, d_keys, d_values);
    if (st != ATTN_OK)
        return st;
    ring_view acc = {io->d_q, ring->heads_q, len, ring->dim_qk, ring->layout, ring->batch};
    ring_view part = {p->d_q_part, ring->heads_q, suffix ? ring->chunk_b[r] : len,
                      ring->dim_qk, ring->layout, ring->batch};
    rows_add(&acc, suffix ? ring->chunk_a[r] : 0, &part);
    return ATTN_OK;
}

static void add_floats(float *acc, const float *part, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        acc[i] += part[i];
}

attn_status ring_backward_run(attn_context *ctx, const attn_mpi_ring *ring,
                              const ring_backward_inputs *in, float *d_q, float *d_k, float *d_v,
                              const ring_caller *caller)
{
    const char *f = caller->func;
    const float *q = in->q, *k = in->k, *v = in->v, *out = in->out, *lse = in->lse;
    const float *d_out = in->d_out;
    backward_plan plan;
    memset(&plan, 0, sizeof plan);
    attn_status st = caller->local;
    if (st == ATTN_OK)
        st = plan_make(ring, d_q == NULL, &plan, f);
    st = ring_agree_layer(ring->comm, ring, st, f, caller->fingerprint);
    if (st != ATTN_OK) {
        plan_free(ring, &plan);
        return st;
    }
    const int r = ring->rank, size = ring->size;
    const int64_t len = ring_len(ring, r);
    const int64_t nk = ring->batch * ring->heads_kv * len * ring->dim_qk;
    const int64_t nv = ring->batch * ring->heads_kv * len * ring->dim_v;
    backward_io io = {q, out, lse, d_out, d_q ? d_q : plan.d_q_own};
    if (ring->causal && ring->chunk_b[r] > 0)
        copy_second_chunk(ring, &plan, q, out, d_out, lse);
    if (nk > 0)
        memcpy(plan.shards[0], k, (size_t)nk * sizeof(float));
    if (nv > 0)
        memcpy(plan.shards[0] + nk, v, (size_t)nv * sizeof(float));

    /* As in the forward, a failed step keeps passing shards on. grads[g]
     * is the gradient of the shard in hand; after each step it leaves for
     * the next rank while grads[1 − g] receives the next shard's. */
    attn_status computed = ATTN_OK, passed = ATTN_OK;
    MPI_Request grad_reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    int hand = 0, g = 0;
    for (int t = 0; t < size && passed == ATTN_OK; t++) {
        int source = (r - t + size) % size, arriving = (source + size - 1) % size;
        if (t + 1 < size)
            passed = ring_pass_post(ring, plan.shards[hand], source, plan.shards[1 - hand],
                                    arriving, reqs, f);
        if (computed == ATTN_OK && passed == ATTN_OK)
            computed = backward_step(ctx, ring, &plan, source, t == 0, &io, plan.shards[hand]);
        /* The shard's gradient so far arrived during the step (posted at
         * the last one): add this rank's part and pass it on. */
        if (passed == ATTN_OK && t > 0)
            passed = ring_pass_wait(grad_reqs, f);
        if (passed == ATTN_OK) {
            int64_t n = ring_shard_floats(ring, source);
            if (t == 0)
                memcpy(plan.grads[g], plan.d_shard, (size_t)n * sizeof(float));
            else if (computed == ATTN_OK)
                add_floats(plan.grads[g], plan.d_shard, n);
            if (size > 1)
                passed = ring_pass_post(ring, plan.grads[g], source, plan.grads[1 - g],
                                        arriving, grad_reqs, f);
        }
        if (passed == ATTN_OK && t + 1 < size)
            passed = ring_pass_wait(reqs, f);
        hand = 1 - hand, g = 1 - g;
    }
    /* The last hop: the gradient of this rank's own shard comes home. */
    if (passed == ATTN_OK && size > 1)
        passed = ring_pass_wait(grad_reqs, f);
    const float *home = plan.grads[size > 1 ? g : 0];
    if (passed == ATTN_OK) {
        st = ring_agree_layer(ring->comm, ring, computed, f, caller->fingerprint);
        if (st == ATTN_OK && d_k && nk > 0)
            memcpy(d_k, home, (size_t)nk * sizeof(float));
        if (st == ATTN_OK && d_v && nv > 0)
            memcpy(d_v, home + nk, (size_t)nv * sizeof(float));
    }
    /* After a failure, no transfer may touch the buffers about to go. */
    ring_pass_drain(reqs, 2);
    ring_pass_drain(grad_reqs, 2);
    plan_free(ring, &plan);
    return passed != ATTN_OK ? passed : st;
}

attn_status attn_mpi_ring_backward(attn_context *ctx, const attn_mpi_ring *ring,
                                   const float *q, const float *k, const float *v,
                                   const float *out, const float *lse, const float *d_out,
                                   float *d_q, float *d_k, float *d_v)
{
    static const char *f = "attn_mpi_ring_backward";
    if (!ring)  /* no communicator to agree over: this rank fails alone */
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    ring_caller caller = {f, ring_check_pointers(ring, ctx, q, k, v, out, lse, d_out, true, f),
                          0};
    ring_backward_inputs in = {q, k, v, out, lse, d_out};
    return ring_backward_run(ctx, ring, &in, d_q, d_k, d_v, &caller);
}
