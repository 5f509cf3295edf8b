/*
 * ring_forward.c — ring attention forward (attn_mpi.h; Liu et al. 2023,
 * Algorithm 1): P steps; at step t rank r holds the shard of rank
 * s = r − t, attends its queries to it with attn_sdpa_forward and merges
 * the partial output into its own by log-sum-exp (attn_merge_partials),
 * while the next shard travels.
 */
#include <stdlib.h>
#include <string.h>

#include "ring_internal.h"

/* Everything a forward needs, allocated before the ranks agree to start. */
typedef struct forward_plan {
    float *shards[2];     /* keys then values of the shard in hand and the next one */
    float *queries_b;     /* the second chunk's queries (causal rings) */
    float *part, *part_lse;  /* one step's output and lse */
    float *own_lse;       /* the lse accumulator when the caller passes none */
    ring_steps steps;     /* the op of each source rank's step */
} forward_plan;

static void plan_free(const attn_mpi_ring *ring, forward_plan *p)
{
    ring_steps_free(ring, &p->steps);
    free(p->shards[0]);
    free(p->shards[1]);
    free(p->queries_b);
    free(p->part);
    free(p->part_lse);
    free(p->own_lse);
}

static attn_status plan_make(const attn_mpi_ring *ring, bool need_lse, forward_plan *p,
                             const char *f)
{
    const int r = ring->rank;
    const int64_t len = ring_len(ring, r), rows = ring->batch * ring->heads_q * len;
    const int64_t shard = ring_shard_capacity(ring);
    memset(p, 0, sizeof *p);
    p->shards[0] = ring_floats(shard);
    p->shards[1] = ring_floats(ring->size > 1 ? shard : 0);
    p->queries_b = ring_floats(ring->batch * ring->heads_q * ring->chunk_b[r] * ring->dim_qk);
    p->part = ring_floats(rows * ring->dim_v);
    p->part_lse = ring_floats(rows);
    p->own_lse = need_lse ? ring_floats(rows) : NULL;
    if (!p->shards[0] || !p->shards[1] || !p->queries_b || !p->part ||
        !p->part_lse || (need_lse && !p->own_lse))
        return ring_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the ring's buffers");
    return ring_steps_make(ring, &p->steps, f);
}

/* Puts this rank's keys and values into the shard buffer it sends first. */
static void shard_fill(const attn_mpi_ring *ring, const float *k, const float *v, float *shard)
{
    int64_t nk = ring->batch * ring->heads_kv * ring_len(ring, ring->rank) * ring->dim_qk;
    int64_t nv = ring->batch * ring->heads_kv * ring_len(ring, ring->rank) * ring->dim_v;
    if (nk > 0)
        memcpy(shard, k, (size_t)nk * sizeof(float));
    if (nv > 0)
        memcpy(shard + nk, v, (size_t)nv * sizeof(float));
}

/* One step: this rank's queries attend to the shard of `source`; the first
 * step (its own shard) writes out and lse, the later ones merge into them. */
static attn_status forward_step(attn_context *ctx, const attn_mpi_ring *ring,
                                const forward_plan *p, int source, bool first,
                                const float *q, const float *shard, float *out, float *lse)
{
    const int r = ring->rank;
    const int64_t len = ring_len(ring, r);
    const float *keys = shard;
    const float *values = shard + ring->batch * ring->heads_kv * ring_len(ring, source) *
                                      ring->dim_qk;
    attn_sdpa *op = p->steps.ops[source];
    if (first)
        return attn_sdpa_forward(ctx, op, q, keys, values, p->steps.masks[source], out, NULL, lse);
    bool suffix = ring_step_kind(ring, source) == STEP_QUERY_SUFFIX;
    int64_t part_len = suffix ? ring->chunk_b[r] : len;
    attn_status st = attn_sdpa_forward(ctx, op, suffix ? p->queries_b : q, keys, values,
                                       p->steps.masks[source], p->part, NULL, p->part_lse);
    if (st != ATTN_OK)
        return st;
    ring_view acc = {out, ring->heads_q, len, ring->dim_v, ring->layout, ring->batch};
    ring_view part = {p->part, ring->heads_q, part_len, ring->dim_v, ring->layout, ring->batch};
    return rows_merge(&acc, lse, suffix ? ring->chunk_a[r] : 0, &part, p->part_lse);
}

attn_status ring_forward_run(attn_context *ctx, const attn_mpi_ring *ring, const float *q,
                             const float *k, const float *v, float *out, float *lse,
                             const ring_caller *caller)
{
    const char *f = caller->func;
    forward_plan plan;
    memset(&plan, 0, sizeof plan);
    attn_status st = caller->local;
    if (st == ATTN_OK)
        st = plan_make(ring, lse == NULL, &plan, f);
    st = ring_agree_layer(ring->comm, ring, st, f, caller->fingerprint);
    if (st != ATTN_OK) {
        plan_free(ring, &plan);
        return st;
    }
    const int r = ring->rank, size = ring->size;
    float *acc_lse = lse ? lse : plan.own_lse;
    if (ring->causal && ring->chunk_b[r] > 0) {
        ring_view all = {(float *)q, ring->heads_q, ring_len(ring, r), ring->dim_qk,
                         ring->layout, ring->batch};
        ring_view second = {plan.queries_b, ring->heads_q, ring->chunk_b[r], ring->dim_qk,
                            ring->layout, ring->batch};
        rows_copy(&all, ring->chunk_a[r], &second);
    }
    shard_fill(ring, k, v, plan.shards[0]);

    /* A step that fails here (scratch memory) leaves this rank passing
     * shards on without computing, so no rank waits forever; the ranks
     * agree on the status at the end. */
    attn_status computed = ATTN_OK, passed = ATTN_OK;
    int hand = 0;
    MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    for (int t = 0; t < size && passed == ATTN_OK; t++) {
        int source = (r - t + size) % size;
        if (t + 1 < size)
            passed = ring_pass_post(ring, plan.shards[hand], source, plan.shards[1 - hand],
                                    (source + size - 1) % size, reqs, f);
        if (computed == ATTN_OK && passed == ATTN_OK)
            computed = forward_step(ctx, ring, &plan, source, t == 0, q, plan.shards[hand],
                                    out, acc_lse);
        if (passed == ATTN_OK && t + 1 < size)
            passed = ring_pass_wait(reqs, f);
        hand = 1 - hand;
    }
    ring_pass_drain(reqs, 2);  /* after a failure, before the buffers go */
    plan_free(ring, &plan);
    if (passed != ATTN_OK)
        return passed;
    return ring_agree_layer(ring->comm, ring, computed, f, caller->fingerprint);
}

attn_status attn_mpi_ring_forward(attn_context *ctx, const attn_mpi_ring *ring,
                                  const float *q, const float *k, const float *v, float *out,
                                  float *lse)
{
    static const char *f = "attn_mpi_ring_forward";
    if (!ring)  /* no communicator to agree over: this rank fails alone */
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    ring_caller caller = {f, ring_check_pointers(ring, ctx, q, k, v, out, NULL, NULL, false, f),
                          0};
    return ring_forward_run(ctx, ring, q, k, v, out, lse, &caller);
}
