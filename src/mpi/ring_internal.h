/*
 * ring_internal.h — what libattn-mpi's files share: the ring's fields, the
 * zig-zag shards, the kind of block each step computes, and the collective
 * agreement on a call's status.
 *
 * libattn-mpi is built on libattn's public API only (attn_sdpa_forward,
 * attn_sdpa_backward, attn_merge_partials, attn_set_error): the attention
 * math stays in libattn's one block schedule (src/attend.c).
 */
#ifndef ATTN_MPI_RING_INTERNAL_H
#define ATTN_MPI_RING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn_mpi.h"

struct attn_mpi_ring {
    MPI_Comm comm;    /* a duplicate of the caller's: our messages never mix with theirs */
    int rank, size;
    int64_t batch, heads_q, heads_kv, seq_len, dim_qk, dim_v;
    attn_layout layout;
    float scale;
    bool causal;
    int64_t *chunk_a;      /* [size]: the length of rank s's first chunk (chunk s) */
    int64_t *chunk_b;      /* [size]: ... of its second chunk (chunk 2·size − 1 − s) */
    int64_t max_len;       /* the largest local length of any rank */
};

/* A ring of `size` ranks seen from `rank`, for the sizes {batch, heads_q,
 * heads_kv, seq_len, dim_qk, dim_v} (already checked): its zig-zag shards,
 * the default settings, no communicator yet (attn_mpi_ring_create adds the
 * duplicate; bench/ring_bench.c's simulation needs none). */
attn_status ring_alloc(attn_mpi_ring **out, int rank, int size, const int64_t s[6],
                       const char *f);
/* Frees a ring's memory (not its communicator). NULL is a no-op. */
void ring_release(attn_mpi_ring *ring);

/* The local length of rank s. */
static inline int64_t ring_len(const attn_mpi_ring *ring, int s)
{
    return ring->chunk_a[s] + ring->chunk_b[s];
}

/* What rank r computes with the key/value shard of rank s (the header's
 * "Shards: zig-zag"). */
typedef enum step_kind {
    STEP_ALL,          /* every query sees every key (not causal) */
    STEP_DIAGONAL,     /* its own shard: causal within it (positions increase) */
    STEP_KEY_PREFIX,   /* s < r: every query sees the shard's first chunk only */
    STEP_QUERY_SUFFIX  /* s > r: only the second chunk's queries, every key */
} step_kind;

step_kind ring_step_kind(const attn_mpi_ring *ring, int source);

/* A local tensor of `len` rows with `heads` heads of `dim` floats in the
 * ring's layout; row_at is where (b, h, i) starts. */
typedef struct ring_view {
    float *data;
    int64_t heads, len, dim;
    attn_layout layout;
    int64_t batch;
} ring_view;

float *row_at(const ring_view *t, int64_t b, int64_t h, int64_t i);
/* malloc of n floats (at least one, so that 0 is not a failure). */
float *ring_floats(int64_t n);
/* Copies rows [first, first + dst->len) of src into dst (same b, h). */
void rows_copy(const ring_view *src, int64_t first, const ring_view *dst);
/* dst rows [first, first + src->len) += src. */
void rows_add(const ring_view *dst, int64_t first, const ring_view *src);
/* Merges the partial (part, part_lse) of src->len rows into rows [first,
 * first + part->len) of (acc, acc_lse), in place, with attn_merge_partials.
 * lse arrays are [batch, heads, len]. */
attn_status rows_merge(const ring_view *acc, float *acc_lse, int64_t first,
                       const ring_view *part, const float *part_lse);

/* The op of one step: q rows × the shard of rank `source`, with the ring's
 * layout, scale and (on the diagonal) causal setting; *mask is NULL, or for
 * STEP_KEY_PREFIX the valid lengths held in lengths[0 .. batch), which must
 * outlive it (a mask refers to its caller's array). The caller destroys
 * both. */
attn_status ring_step_op(const attn_mpi_ring *ring, int source, const char *func,
                         attn_sdpa **op, attn_mask **mask, int64_t *lengths);

/* The ops of every step of a call, made before the ranks agree to start. */
typedef struct ring_steps {
    attn_sdpa **ops;      /* [size] */
    attn_mask **masks;    /* [size]: NULL, or a STEP_KEY_PREFIX's valid lengths */
    int64_t *lengths;     /* [size × batch]: the masks' arrays */
} ring_steps;

attn_status ring_steps_make(const attn_mpi_ring *ring, ring_steps *steps, const char *func);
void ring_steps_free(const attn_mpi_ring *ring, ring_steps *steps);

/* The required pointers of a forward (ctx, and q, k, v, out when this
 * rank's tensors are not empty) or a backward (also lse and d_out):
 * ATTN_ERR_NULL_POINTER naming the first one missing, or ATTN_OK. */
attn_status ring_check_pointers(const attn_mpi_ring *ring, const attn_context *ctx,
                                const float *q, const float *k, const float *v,
                                const float *out, const float *lse, const float *d_out,
                                bool backward, const char *func);

/* ---- passing shards round the ring ------------------------------------------- */

/* The number of floats of rank s's shard: its keys and values (or their
 * gradients), [batch, heads_kv, len, dim_qk] then [..., dim_v]. */
int64_t ring_shard_floats(const attn_mpi_ring *ring, int s);
/* The largest of them: what a buffer for any rank's shard holds. */
int64_t ring_shard_capacity(const attn_mpi_ring *ring);

/* Posts the receive of the shard of rank `arriving` from the previous rank
 * into recv and the send of the shard of rank `leaving` in send to the next
 * (MPI_Irecv, MPI_Isend with the ring's tag); reqs[2] then hold them. */
attn_status ring_pass_post(const attn_mpi_ring *ring, const float *send, int leaving,
                           float *recv, int arriving, MPI_Request reqs[2], const char *func);
/* Waits for both (MPI_Waitall); reqs become MPI_REQUEST_NULL. */
attn_status ring_pass_wait(MPI_Request reqs[2], const char *func);
/* After a failure: cancels and completes every request of reqs[0 .. n)
 * still active, so that no transfer touches a buffer about to be freed. */
void ring_pass_drain(MPI_Request *reqs, int n);

/* ---- the ring's passes, for the SDPA calls and the MHA layer's ---------------- */

/* Who runs a pass: its public name (messages, and which call the ranks
 * must all be in), the status of its own checks on this rank, and a
 * fingerprint of what else every rank must share (the MHA layer; 0 for
 * the SDPA calls). */
typedef struct ring_caller {
    const char *func;
    attn_status local;
    uint64_t fingerprint;
} ring_caller;

/* attn_mpi_ring_forward with the ring's layout, scale and causal setting
 * (the MHA layer passes a copy of its ring with its own), after the
 * caller's checks: plans, agrees, runs the P steps, agrees again. */
attn_status ring_forward_run(attn_context *ctx, const attn_mpi_ring *ring, const float *q,
                             const float *k, const float *v, float *out, float *lse,
                             const ring_caller *caller);

/* The inputs of a backward pass: the forward's q, k, v, its global out and
 * lse, and d_out. */
typedef struct ring_backward_inputs {
    const float *q, *k, *v, *out, *lse, *d_out;
} ring_backward_inputs;

/* attn_mpi_ring_backward, as ring_forward_run. */
attn_status ring_backward_run(attn_context *ctx, const attn_mpi_ring *ring,
                              const ring_backward_inputs *in, float *d_q, float *d_k, float *d_v,
                              const ring_caller *caller);

/* Row-major C [m, n] = op(A) · op(B) + beta · C with alpha 1 and beta 0 or
 * 1, through the GEMM provider libattn was built with; nothing when m or n
 * is 0, and C = beta · C when k is 0 (ring_gemm.c). Sizes fit an int. */
void ring_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* ---- the collective agreement --------------------------------------------- */

/* Every rank passes its local status (with its attn_last_error() set when
 * not ATTN_OK); all ranks return the first failing rank's status, each
 * with the message "rank R: <its message>", or ATTN_ERR_STATE if the ranks
 * are in different calls (func names the call) or their
 * rings' layout, scale or causal setting differ (ring may be NULL for calls
 * without one), or ATTN_OK. comm must be valid on every rank. */
attn_status ring_agree(MPI_Comm comm, const attn_mpi_ring *ring, attn_status local,
                       const char *func);
/* ring_agree, and every rank must pass the same fingerprint (else
 * ATTN_ERR_STATE: the ranks' layers differ). */
attn_status ring_agree_layer(MPI_Comm comm, const attn_mpi_ring *ring, attn_status local,
                             const char *func, uint64_t fingerprint);

/* values [count] = their sum over comm's ranks, in place, with MPI_Allreduce
 * in pieces MPI's int counts can hold (data_parallel.c); every rank passes
 * the same count. ATTN_ERR_COMMUNICATION names func. */
attn_status ring_allreduce_sum(MPI_Comm comm, float *values, int64_t count, const char *func);

/* ATTN_ERR_COMMUNICATION with MPI's error string for code, naming call. */
attn_status ring_mpi_fail(int code, const char *func, const char *call);

/* attn_set_error with a printf format. */
attn_status ring_fail(attn_status status, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The float count of n elements as MPI's int, or -1 above INT_MAX. */
int ring_count(int64_t n);

#endif /* ATTN_MPI_RING_INTERNAL_H */
