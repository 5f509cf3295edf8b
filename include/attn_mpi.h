/*
 * attn_mpi.h — libattn-mpi: attention over a sequence split across MPI
 * processes (ring attention) and data-parallel gradient averaging (v1.1).
 *
 * A separate library, built with `meson setup -Dmpi=enabled` and linked with
 * `pkg-config --cflags --libs attn-mpi`, so that libattn itself never
 * depends on MPI. Programs include <attn_mpi.h>, which includes <attn.h>
 * and <mpi.h>. Errors follow libattn's one model: every call returns an
 * attn_status and attn_last_error() tells the detail. docs/distributed.md
 * shows how to run it with mpirun.
 */
#ifndef ATTN_MPI_H
#define ATTN_MPI_H

#include <mpi.h>

#include <attn.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @defgroup mpi Beyond one machine: ring attention and data parallelism over MPI (v1.1)
 *
 * **Ring attention** (Liu, Zaharia and Abbeel 2023, "Ring Attention with
 * Blockwise Transformers for Near-Infinite Context", Algorithm 1). A
 * sequence of seq_len positions is split across the P processes of a
 * communicator; each holds the queries, keys and values of its positions.
 * The key/value shards travel round the ring, rank r sending to r + 1 and
 * receiving from r − 1 with non-blocking MPI calls posted before the block
 * is computed, so the transfer of the next shard overlaps the attention to
 * the current one. Each rank attends its queries to each shard with
 * attn_sdpa_forward (its output and log-sum-exp) and merges the P partial
 * results with attn_merge_partials:
 * @code{.unparsed}
 *   lse = log Σ_s exp(lse_s),   out = Σ_s exp(lse_s − lse) · out_s
 * @endcode
 * which is exactly the softmax attention over all seq_len keys (the same
 * formula as attn_sdpa_forward; D2L §10.3; Vaswani et al. 2017, eq. 1). No
 * rank ever holds more than two shards of keys and values.
 *
 * **Shards: zig-zag** (the causal load balance of Brandon et al. 2023,
 * "Striped Attention", and of zhuzilin/ring-flash-attention's zigzag
 * variant). The positions are cut into 2P chunks as even as possible
 * (chunk c has seq_len / 2P positions, one more for c < seq_len mod 2P);
 * rank r holds chunks r and 2P − 1 − r, in increasing order of position.
 * Under causal attention each step computes its own shard (causal), the
 * first chunk of an earlier rank's shard (all of its queries see it), or
 * all of a later rank's shard (only its second chunk's queries see it), and
 * every rank computes the same number of query-key pairs, about
 * seq_len² / 2P, when 2P divides seq_len (otherwise the ranks differ by
 * less than 2 · seq_len pairs). Any seq_len >= 0 works with any number of
 * ranks; a rank may hold no position.
 * attn_mpi_ring_positions lists a rank's positions.
 *
 * **Backward** (ring-flash-attention's; FlashAttention-2's backward per
 * shard, Dao 2023, Algorithm 2): attn_sdpa_backward per key/value shard with
 * the *global* out and lse (never through the merge: the softmax of each
 * shard is recomputed as exp(logits − lse) from the global lse, and D =
 * Σ dO ∘ O from the global out). The shard's dK and dV travel round the
 * ring with it and arrive home after P steps plus one hop.
 *
 * **Local tensors** of rank r, with L = its number of positions
 * (attn_mpi_ring_local_len), rows in increasing order of position:
 * @code{.unparsed}
 *   q, d_q      [batch, heads_q,  L, dim_qk]   (BHSD; or [batch, L, heads_q,  dim_qk], BSHD)
 *   k, d_k      [batch, heads_kv, L, dim_qk]   (layout of q)
 *   v, d_v      [batch, heads_kv, L, dim_v]    (layout of q)
 *   out, d_out  [batch, heads_q,  L, dim_v]    (layout of q)
 *   lse         [batch, heads_q,  L]           (always this order)
 * @endcode
 * Grouped-query attention (heads_q a multiple of heads_kv) works as in
 * attn_sdpa_forward; masks other than causal are not supported here.
 *
 * **Collective calls.** The functions marked *collective* must be called
 * by every rank of the communicator, in the same order, with the same
 * shapes and settings. Their arguments are checked on every rank and the
 * ranks agree before any message is sent: if one rank's arguments are
 * wrong, *every* rank returns that status, with the message "rank R: ..."
 * of the first failing rank, and no rank writes an output. A ring whose
 * settings (layout, scale, causal) differ between ranks gives
 * ATTN_ERR_STATE on every rank, as do ranks in different calls (one in the
 * forward, another in the backward). Two failures cannot be agreed on and
 * are the failing rank's alone, the others then waiting for it: a NULL ring,
 * and comm MPI_COMM_NULL. A step that fails after the first message
 * (scratch memory in attn_sdpa_forward) is agreed on at the end of the
 * call; the outputs are then unspecified.
 *
 * **MPI errors.** The ring's messages go over its duplicate of comm, whose
 * error handler is MPI_ERRORS_RETURN: an MPI call that fails there gives
 * ATTN_ERR_COMMUNICATION with MPI's error string, after the call's pending
 * transfers are cancelled; the outputs are then unspecified, and ranks
 * whose peer failed may wait (MPI's own failure handling decides). The few
 * collective calls made on the caller's comm itself (in
 * attn_mpi_ring_create before the duplicate exists, and in
 * attn_mpi_allreduce_mean) follow comm's error handler: MPI's default,
 * MPI_ERRORS_ARE_FATAL, ends the program; set MPI_ERRORS_RETURN on comm to
 * get ATTN_ERR_COMMUNICATION instead. libattn-mpi never calls MPI_Init or
 * MPI_Finalize: the program does, before the first and after the last call
 * here.
 *
 * **Threads.** One collective call at a time per ring (a ring must never
 * serve two calls at once); a ring's calls may run on any thread that MPI
 * allows to call it (MPI_THREAD_SERIALIZED or above when not always the
 * main thread). The context is used as by attn_sdpa_forward: never by two
 * calls at once. The local calls (local_len, positions) are thread-safe.
 *
 * **Ownership.** Every tensor is the caller's: read or written during the
 * call only, never kept. The ring owns its memory and its duplicate
 * communicator until attn_mpi_ring_destroy.
 *
 * **Memory per rank**, beyond the caller's tensors, with M the largest
 * local length of the ring (at most seq_len/P + 2) and S = batch × heads_kv
 * × M × (dim_qk + dim_v) floats, one shard: the forward holds 2 S (the
 * shard in hand and the one arriving), one step's output and lse for the
 * local rows, and a copy of the second chunk's queries; the backward 5 S
 * (two shards, two of their gradients, one step's), one step's d_q for the
 * local rows, and copies of the second chunk's q, out, d_out and lse.
 * Never seq_len × seq_len.
 *
 * Added in 1.1.0.
 * @{
 */

/** A ring attention plan over an MPI communicator (opaque): the shapes of
 * the whole sequence, this rank's shard, its settings, and a duplicate of
 * the communicator, so its messages never mix with the program's. */
typedef struct attn_mpi_ring attn_mpi_ring;

/** Creates a ring for attention over a sequence of seq_len positions split
 * across the ranks of comm (zig-zag shards, above), with BHSD layout, scale
 * 1/sqrt(dim_qk) and no causal restriction. *Collective* over comm (it
 * duplicates comm with MPI_Comm_dup).
 * Ranges: batch, seq_len >= 0; heads_q, heads_kv, dim_qk, dim_v >= 1;
 * heads_q a multiple of heads_kv; every rank passes the same sizes.
 * Returns ATTN_ERR_NULL_POINTER (ring NULL), ATTN_ERR_INVALID_ARGUMENT (a
 * size out of its range, comm MPI_COMM_NULL), ATTN_ERR_SHAPE_MISMATCH
 * (heads_q % heads_kv != 0, or the ranks passed different sizes),
 * ATTN_ERR_UNSUPPORTED (a shard's message above INT_MAX floats, the largest
 * count an MPI call takes; or sizes attn_sdpa_create refuses),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_COMMUNICATION;
 * every rank returns the same status (but for comm MPI_COMM_NULL, above).
 * On failure *ring is untouched. Release with attn_mpi_ring_destroy. */
ATTN_API attn_status attn_mpi_ring_create(attn_mpi_ring **ring, MPI_Comm comm, int64_t batch,
                                          int64_t heads_q, int64_t heads_kv, int64_t seq_len,
                                          int64_t dim_qk, int64_t dim_v);

/** Frees the ring and its duplicate communicator. *Collective* over the
 * ring's ranks (MPI_Comm_free), not to overlap another call on the ring.
 * NULL is a no-op. */
ATTN_API void attn_mpi_ring_destroy(attn_mpi_ring *ring);

/** Sets the layout of q, k, v, out and their gradients (lse is always
 * [batch, heads_q, L]). Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (not an attn_layout value). Local: every rank
 * must set the same (checked by the next collective call); not during a
 * call on the ring. */
ATTN_API attn_status attn_mpi_ring_set_layout(attn_mpi_ring *ring, attn_layout layout);

/** Sets the factor on q·k (default 1/sqrt(dim_qk)). Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (NaN or ±Inf). Local,
 * as attn_mpi_ring_set_layout. */
ATTN_API attn_status attn_mpi_ring_set_scale(attn_mpi_ring *ring, float scale);

/** Causal attention over the whole sequence: the query at position i sees
 * the keys at positions j <= i. Queries and keys are the same positions, so
 * ATTN_CAUSAL_TOP_LEFT and ATTN_CAUSAL_BOTTOM_RIGHT mean the same here;
 * ATTN_CAUSAL_NONE (the default) lets every query see every key. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (not an attn_causal
 * value). Local, as attn_mpi_ring_set_layout. */
ATTN_API attn_status attn_mpi_ring_set_causal(attn_mpi_ring *ring, attn_causal causal);

/** This rank's number of positions L (0 <= L <= seq_len). Returns
 * ATTN_ERR_NULL_POINTER. Local, thread-safe. */
ATTN_API attn_status attn_mpi_ring_local_len(const attn_mpi_ring *ring, int64_t *len);

/** Writes the global position (0 .. seq_len − 1) of each of this rank's L
 * rows into positions[0 .. L), in increasing order, so that a program can
 * cut its local q, k, v from the whole sequence and put results back.
 * Returns ATTN_ERR_NULL_POINTER (ring NULL; positions NULL with L > 0).
 * Local, thread-safe. */
ATTN_API attn_status attn_mpi_ring_positions(const attn_mpi_ring *ring, int64_t *positions);

/** Ring attention forward (above): this rank's out and lse of attention
 * over the whole sequence, from its local q, k, v (shapes above). lse may
 * be NULL when not needed; the backward needs it. The inputs must not
 * overlap the outputs. *Collective* over the ring's ranks.
 * Returns ATTN_ERR_NULL_POINTER (ctx, ring, or a non-empty q, k, v or out
 * NULL), ATTN_ERR_STATE (the ranks' settings differ),
 * ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_COMMUNICATION, or what
 * attn_sdpa_forward returns; every rank returns the same status (but for a
 * NULL ring, above). Nothing is written on a failure found before the first
 * message. */
ATTN_API attn_status attn_mpi_ring_forward(attn_context *ctx, const attn_mpi_ring *ring,
                                           const float *q, const float *k, const float *v,
                                           float *out, float *lse);

/** Ring attention backward: given d_out = ∂L/∂out for this rank's rows,
 * writes this rank's d_q, d_k and d_v (each may be NULL when not needed;
 * the shards' gradients are computed and passed on regardless), for the
 * forward made with the same ring and inputs; out and lse are that
 * forward's (the global results, required). With GQA, d_k and d_v sum over
 * each group's query heads. Keys no query sees get zero gradients.
 * *Collective* over the ring's ranks.
 * Returns ATTN_ERR_NULL_POINTER (ctx, ring, or a non-empty q, k, v, out,
 * lse or d_out NULL), ATTN_ERR_STATE, ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_COMMUNICATION, or what attn_sdpa_backward returns; every rank
 * returns the same status (but for a NULL ring). Nothing is written on a
 * failure found before the first message. */
ATTN_API attn_status attn_mpi_ring_backward(attn_context *ctx, const attn_mpi_ring *ring,
                                            const float *q, const float *k, const float *v,
                                            const float *out, const float *lse,
                                            const float *d_out, float *d_q, float *d_k,
                                            float *d_v);

/** What attn_mpi_ring_mha_forward keeps for attn_mpi_ring_mha_backward
 * (opaque, owned by the caller): a copy of the layer's parameters, of this
 * rank's inputs, their projections, and the attention output and lse of
 * this rank's rows: O(batch × L × (embed_dim + kdim + vdim)) floats plus the
 * parameters, never seq_len × seq_len. One object serves one
 * forward/backward pair at a time; it grows as needed and keeps its memory
 * for the next step. Thread-safety: one call at a time per object. */
typedef struct attn_mpi_activations attn_mpi_activations;

/** Creates an empty activations object. Returns ATTN_ERR_NULL_POINTER (act
 * NULL), ATTN_ERR_OUT_OF_MEMORY. Local. Release with
 * attn_mpi_activations_destroy. */
ATTN_API attn_status attn_mpi_activations_create(attn_mpi_activations **act);

/** Frees act and what it holds. NULL is a no-op. Local. */
ATTN_API void attn_mpi_activations_destroy(attn_mpi_activations *act);

/** The multi-head attention layer (attn_mha_forward; D2L §10.5) over the
 * ring's sequence: self-attention of the seq_len positions split across the
 * ranks, each rank passing its own rows and getting its own rows' output.
 * Each rank projects its rows (with the GEMM libattn was built with:
 * OpenBLAS's cblas_sgemm by default), the attention is the ring's (above)
 * on the projected heads, and each rank projects its rows' result with Wo:
 * @code{.unparsed}
 *   Q = query Wqᵀ + bq, K = key Wkᵀ + bk, V = value Wvᵀ + bv   (this rank's rows)
 *   A = ring attention of Q, K, V over all seq_len positions
 *   out = A Woᵀ + bo
 * @endcode
 * The same numbers as one process's attn_mha_forward over the whole
 * sequence, to float rounding (tests/mpi/test_ring_mha.c).
 * @code{.unparsed}
 *   query  [batch, L, embed_dim]   this rank's rows (attn_mpi_ring_positions)
 *   key    [batch, L, kdim]
 *   value  [batch, L, vdim]        (self-attention: the same pointer thrice)
 *   out    [batch, L, embed_dim], written completely
 *   act    NULL (inference), or an activations object to fill for
 *          attn_mpi_ring_mha_backward
 * @endcode
 * The ring must have been made with heads_q = num_heads, heads_kv =
 * num_kv_heads and dim_qk = dim_v = head_dim. The layer's settings apply,
 * not the ring's: the scale is 1/sqrt(head_dim), the attention is causal
 * over the whole sequence when the layer's causal setting is not
 * ATTN_CAUSAL_NONE (top-left and bottom-right are the same here), and the
 * ring's layout is not used (rows are [batch, L, features]). Every rank
 * must pass the same layer (the same sizes, settings and parameters: the
 * ranks compare a fingerprint of them). Masks, score modifiers (window,
 * softcap, ALiBi), RoPE and dropout are not supported here.
 * *Collective* over the ring's ranks.
 * Returns ATTN_ERR_NULL_POINTER (ctx, ring, mha, or a non-empty query, key,
 * value or out NULL), ATTN_ERR_SHAPE_MISMATCH (the layer's heads or
 * head_dim are not the ring's), ATTN_ERR_UNSUPPORTED (the layer has a score
 * modifier, RoPE or dropout set), ATTN_ERR_STATE (a projection not set;
 * the ranks' layers or rings' settings differ), ATTN_ERR_SIZE_OVERFLOW,
 * ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_COMMUNICATION, or what
 * attn_sdpa_forward returns; every rank returns the same status (but for a
 * NULL ring). Nothing is written to out on a failure, and act is then
 * empty. Added in 1.1.0. */
ATTN_API attn_status attn_mpi_ring_mha_forward(attn_context *ctx, const attn_mpi_ring *ring,
                                               const attn_mha *mha, const float *query,
                                               const float *key, const float *value,
                                               float *out, attn_mpi_activations *act);

/** Gradients of the last attn_mpi_ring_mha_forward that filled act, given
 * d_out = ∂L/∂out for this rank's rows [batch, L, embed_dim]:
 * @code{.unparsed}
 *   d_query  NULL or [batch, L, embed_dim]   this rank's rows
 *   d_key    NULL or [batch, L, kdim]
 *   d_value  NULL or [batch, L, vdim]
 *   d_params NULL or [count] (attn_mha_get_params' layout): the gradient
 *            over the whole sequence, summed over the ranks (MPI_Allreduce),
 *            as one process's attn_mha_backward to float rounding; the
 *            same bits on every rank when MPI gives every rank the same
 *            sum (as attn_mpi_allreduce_mean, above)
 * @endcode
 * Self-attention: when two or three of d_query, d_key, d_value are the same
 * pointer (and have the same features), it receives their sum, as in
 * attn_mha_backward. Every rank must pass d_params, or every rank NULL.
 * The formula is attn_mha_backward's chain rule on this rank's rows, with
 * the ring backward (above) for the attention.
 * Between the forward and the backward the layer must not change (its
 * parameters and settings are compared with act's copy). For data
 * parallelism on top, average d_params over the data-parallel ranks with
 * attn_mpi_allreduce_mean.
 * *Collective* over the ring's ranks.
 * Returns ATTN_ERR_NULL_POINTER (ctx, ring, mha, act, a non-empty d_out
 * NULL), ATTN_ERR_STATE (act empty, filled with another ring or layer, the
 * layer changed since; the ranks' layers differ, or some pass d_params and
 * some NULL), ATTN_ERR_INVALID_ARGUMENT (an output overlapping d_out or,
 * unless equal as above, another output), ATTN_ERR_SHAPE_MISMATCH,
 * ATTN_ERR_UNSUPPORTED (as the forward), ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_COMMUNICATION, or what attn_sdpa_backward returns; every rank
 * returns the same status (but for a NULL ring). Nothing is written on a
 * failure found before the first message; after an MPI failure in the sum,
 * d_params is unspecified. act is only read: the backward may be repeated.
 * Added in 1.1.0. */
ATTN_API attn_status attn_mpi_ring_mha_backward(attn_context *ctx, const attn_mpi_ring *ring,
                                                const attn_mha *mha,
                                                const attn_mpi_activations *act,
                                                const float *d_out, float *d_query,
                                                float *d_key, float *d_value, float *d_params);

/** Data parallelism (PyTorch's DistributedDataParallel, Li et al. 2020,
 * "PyTorch Distributed", §3.2): replaces values[0 .. count) on every rank
 * of comm by their mean over the ranks, with MPI_Allreduce (MPI_SUM, in
 * place, in pieces of at most 2^30 floats) followed by a division by the
 * number of ranks. Call it on a flat gradient (attn_mha_backward's d_params,
 * attn_encoder_layer_backward's) after each rank's backward over its own
 * part of the batch and before the optimizer step: every rank then takes
 * the same step and the parameters stay identical, as in one process over
 * the whole batch when the loss is a mean over equal parts.
 * The mean is computed the same way on every rank from MPI_Allreduce's
 * sum, which MPI gives every rank alike (the standard advises it; Open MPI
 * and MPICH do; the tests check the means bit for bit).
 * *Collective* over comm; every rank passes the same count. values is the
 * caller's, written in place. Thread-safety: as MPI allows collective calls
 * on comm.
 * Returns ATTN_ERR_NULL_POINTER (values NULL with count > 0),
 * ATTN_ERR_INVALID_ARGUMENT (count < 0; comm MPI_COMM_NULL, on that rank
 * alone), ATTN_ERR_SHAPE_MISMATCH (the ranks passed different counts),
 * ATTN_ERR_COMMUNICATION (with MPI_ERRORS_RETURN on comm, above); every
 * rank returns the same status. */
ATTN_API attn_status attn_mpi_allreduce_mean(MPI_Comm comm, float *values, int64_t count);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* ATTN_MPI_H */
