/*
 * attn_decoding.h — libattn's the paged KV cache, cached attention, merging partial results (v1.1).
 *
 * Part of the public header: programs include <attn.h>, which includes this
 * file inside its extern "C" block, after the types it uses. The general
 * rules (tensors, ownership, thread-safety, errors, versioning) are attn.h's.
 */
#ifndef ATTN_DECODING_H
#define ATTN_DECODING_H

#ifndef ATTN_H_INSIDE
#error "include <attn.h>, not <attn_decoding.h>"
#endif

/**
 * @defgroup decoding Decoding: the paged KV cache and cached attention (v1.1)
 *
 * Autoregressive decoding (D2L §10.7.6's prediction; seed 004's text
 * generation) attends each new token to every earlier one. The cache keeps
 * the earlier tokens' keys and values, so a step computes the new tokens'
 * projections only and reads the cached K and V once.
 *
 * Storage is paged (Kwon et al. 2023, "Efficient Memory Management for
 * Large Language Model Serving with PagedAttention", §4.2): the cache owns
 * num_pages pages of page_size tokens for all its sequences; a sequence
 * takes a page when it needs one and gives its pages back when closed or
 * truncated, so memory is the pages and nothing per token beyond them.
 * Fork shares the source's pages (copy-on-write: a shared page is copied
 * only when one of its sequences appends into it), for beam search and
 * shared prompts; truncate rolls a sequence back (speculative decoding).
 *
 * Causality in the cache is bottom-right per sequence (FlashAttention
 * >= 2.1, vLLM, MLX): of the n_q new tokens of a sequence of n tokens
 * (after their append), query i sees keys j <= n − n_q + i, its aligned
 * position p. The score modifiers apply with that p, and the RoPE of
 * attn_mha_forward_cached rotates the new tokens at positions len .. len +
 * n_q − 1, len the cached length before them.
 *
 * Converters: HF transformers' DynamicCache.update(k, v, layer) is
 * attn_kv_cache_append (one cache per layer); its crop(n) is
 * attn_kv_cache_seq_truncate; llama.cpp's llama_kv_self_seq_rm(seq, p0, -1)
 * is truncate to p0 and llama_kv_self_seq_cp is fork; FlashAttention's
 * kvcache call, given new k and v, cache_seqlens, a block_table and
 * causal=True, is append followed by attn_sdpa_forward_cached, and its
 * varlen call's cu_seqlens_q is cu_q (docs/decoding.md has the names).
 *
 * A cache is not thread-safe: calls that change it (open, close, fork,
 * truncate, append, attn_mha_forward_cached) must not overlap any other
 * call on it; calls that only read it (seq_len, attn_sdpa_forward_cached)
 * may run at once. Added in 1.1.0.
 * @{
 */

/** Paged K/V storage for many sequences (opaque). */
typedef struct attn_kv_cache attn_kv_cache;

/** Creates a cache of num_pages pages, each holding page_size tokens of
 * heads_kv heads (keys of dim_qk, values of dim_v floats): num_pages ×
 * page_size × heads_kv × (dim_qk + dim_v) floats, allocated here once.
 * All sizes >= 1. Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (a size below 1), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (a dim or
 * page_size above INT_MAX), ATTN_ERR_OUT_OF_MEMORY; *cache untouched on
 * failure. Release with attn_kv_cache_destroy. */
ATTN_API attn_status attn_kv_cache_create(attn_kv_cache **cache, int64_t heads_kv,
                                          int64_t dim_qk, int64_t dim_v, int64_t page_size,
                                          int64_t num_pages);

/** Frees the cache and every sequence in it. NULL is a no-op. */
ATTN_API void attn_kv_cache_destroy(attn_kv_cache *cache);

/** Opens an empty sequence and stores its id (the smallest id not in use, a
 * small non-negative integer) in *seq. Takes no page. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_OUT_OF_MEMORY (the sequence table). */
ATTN_API attn_status attn_kv_cache_seq_open(attn_kv_cache *cache, int64_t *seq);

/** Closes seq, giving back the pages no other sequence shares; its id may
 * be handed out again. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (seq not open). */
ATTN_API attn_status attn_kv_cache_seq_close(attn_kv_cache *cache, int64_t seq);

/** Opens a new sequence *dst with src's tokens, sharing src's pages (no
 * copy now; a shared, partly filled last page is copied when either
 * appends to it). Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (src not open), ATTN_ERR_OUT_OF_MEMORY (tables); nothing changes on
 * failure. */
ATTN_API attn_status attn_kv_cache_seq_fork(attn_kv_cache *cache, int64_t src, int64_t *dst);

/** Keeps the first len tokens of seq (0 <= len <= its length) and gives
 * back the pages past them that no other sequence shares. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (seq not open, len out
 * of range). */
ATTN_API attn_status attn_kv_cache_seq_truncate(attn_kv_cache *cache, int64_t seq, int64_t len);

/** The number of tokens of seq. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (seq not open). */
ATTN_API attn_status attn_kv_cache_seq_len(const attn_kv_cache *cache, int64_t seq,
                                           int64_t *len);

/** Appends n >= 0 tokens to seq: k [n, heads_kv, dim_qk] and v [n, heads_kv,
 * dim_v] (token-major, as a BSHD row of one batch), copied into its pages.
 * Returns ATTN_ERR_NULL_POINTER (cache; k or v with n > 0),
 * ATTN_ERR_INVALID_ARGUMENT (seq not open, n negative, the sequence's
 * length would overflow), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_STATE (not
 * enough free pages: nothing is
 * appended, the cache is unchanged), ATTN_ERR_OUT_OF_MEMORY (the page
 * table). */
ATTN_API attn_status attn_kv_cache_append(attn_kv_cache *cache, int64_t seq, int64_t n,
                                          const float *k, const float *v);

/** Copies tokens [start, start + n) of seq out of the cache: k [n, heads_kv,
 * dim_qk] and v [n, heads_kv, dim_v], token-major as attn_kv_cache_append
 * takes them; either may be NULL (not copied). For checkpoints, for
 * frameworks that want the concatenated keys (ONNX Attention's present_key,
 * HF's cache tensors) and for tests. Returns ATTN_ERR_NULL_POINTER (cache),
 * ATTN_ERR_INVALID_ARGUMENT (seq not open, the range not within its
 * tokens). Thread-safe with other calls that only read the cache. */
ATTN_API attn_status attn_kv_cache_read(const attn_kv_cache *cache, int64_t seq, int64_t start,
                                        int64_t n, float *k, float *v);

/** Attention of the new queries of n_seqs sequences against their cached
 * keys and values, in one call (continuous batching; chunked prefill with
 * several new tokens per sequence; one token each for decoding):
 * @code{.unparsed}
 *   seqs  [n_seqs]      open sequences of cache (append their new K, V first)
 *   cu_q  [n_seqs + 1]  cu_q[0] = 0, non-decreasing: sequence s owns query rows
 *                       cu_q[s] .. cu_q[s+1] − 1 (its n_q new tokens, in order)
 *   q     [total_q, heads_q, dim_qk]   total_q = cu_q[n_seqs]
 *   out   [total_q, heads_q, dim_v], written completely
 *   lse   NULL or [total_q, heads_q]: natural log-sum-exp of each row,
 *         −∞ for a row that sees no key
 * @endcode
 * The op gives heads_q, heads_kv, dim_qk, dim_v (which must match the
 * cache), the scale and the score modifiers; its batch, len_q, len_kv,
 * layout, causal and dropout settings are not used: causality is
 * bottom-right per sequence (above), and there is no dropout. A sequence
 * with n_q > its length has n_q − n empty first rows (zeros), as
 * ATTN_CAUSAL_BOTTOM_RIGHT with len_q > len_kv.
 *
 * The work is split over the context's threads by (sequence, query head,
 * block of query rows) and, when those are fewer than the threads, by
 * blocks of keys whose partial results are merged by their log-sum-exp
 * (flash-decoding; attn_merge_partials): one long sequence still uses
 * every core. Each block's logits and P·V go through cblas_sgemm (or
 * cblas_sgemv for one query row) page by page; the softmax, masks and
 * modifiers are attn_sdpa_forward's. Memory: scratch of block × keys per
 * thread and, when keys are split, their partial outputs.
 * Returns ATTN_ERR_NULL_POINTER (ctx, op, cache, seqs or cu_q with
 * n_seqs > 0, q or out with total_q > 0), ATTN_ERR_INVALID_ARGUMENT (n_seqs
 * negative, a sequence not open, cu_q not starting at 0 or decreasing),
 * ATTN_ERR_SHAPE_MISMATCH (heads_kv or a dim differs from the cache's),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY; on failure nothing is
 * written. Thread-safe with other calls that only read the cache, each
 * with its own context. */
ATTN_API attn_status attn_sdpa_forward_cached(attn_context *ctx, const attn_sdpa *op,
                                              const attn_kv_cache *cache, int64_t n_seqs,
                                              const int64_t *seqs, const int64_t *cu_q,
                                              const float *q, float *out, float *lse);

/** The multi-head layer's step with a cache: projects query [total_q,
 * embed_dim] (the new tokens of n_seqs sequences, rows as cu_q says) to Q,
 * K and V, applies the layer's RoPE (attn_mha_set_rope) to Q and K at the
 * positions after each sequence's cached length, appends K and V to the
 * cache (heads_kv = num_kv_heads, dims = head_dim), attends as
 * attn_sdpa_forward_cached with the layer's score modifiers, and projects
 * the result: out [total_q, embed_dim]. Self-attention only (kdim = vdim =
 * embed_dim). Decoding token by token gives the numbers of one causal
 * attn_mha_forward over the whole sequence (ATTN_CAUSAL_BOTTOM_RIGHT or
 * TOP_LEFT, which agree for self-attention) to float32 rounding.
 * Returns the statuses of attn_sdpa_forward_cached, plus
 * ATTN_ERR_INVALID_ARGUMENT (a sequence listed twice; with RoPE tables, a
 * position outside them), ATTN_ERR_STATE (weights not set; or not enough
 * free pages for the new tokens of every sequence, counted as the appends
 * take them, a shared page copied only while still shared: nothing is
 * appended), ATTN_ERR_SHAPE_MISMATCH (kdim or vdim not embed_dim, the
 * cache's heads or dims not the layer's), ATTN_ERR_UNSUPPORTED (total_q
 * above INT_MAX, the GEMMs' largest size); on failure the
 * cache and out are unchanged. Not thread-safe with other calls on the same
 * cache. */
ATTN_API attn_status attn_mha_forward_cached(attn_context *ctx, const attn_mha *mha,
                                             attn_kv_cache *cache, int64_t n_seqs,
                                             const int64_t *seqs, const int64_t *cu_q,
                                             const float *query, float *out);

/** The encoder layer's step with a cache, for decoding a stack of layers
 * (a decoder-only language model: causal pre- or post-norm layers) token
 * by token or chunk by chunk: src [total_q, d_model] holds the new tokens
 * of n_seqs sequences (rows as cu_q says, as for attn_sdpa_forward_cached);
 * the self-attention appends their K and V to cache and attends to every
 * cached token of the same sequence and to the new ones before it
 * (attn_mha_forward_cached); the norms, the feed-forward and the residuals
 * run on the new rows only. out [total_q, d_model] may be src (in place);
 * otherwise they must not overlap.
 *
 * One cache per layer: a stack of N layers keeps N caches, each created
 * with heads_kv = nhead and dim_qk = dim_v = d_model / nhead, and every
 * layer's call takes the same seqs and cu_q (open, fork, truncate and
 * close a sequence in every cache alike). The layer must be causal
 * (attn_encoder_layer_set_causal; either alignment, they agree for
 * self-attention): then decoding a sequence in any chunks gives the numbers
 * of one attn_encoder_layer_forward over the whole sequence to float32
 * rounding (the sums of the attention run in another order). The layer's
 * self-attention keeps any RoPE or score modifiers given to it before
 * (none can be set through the encoder layer's calls). No dropout: this is
 * inference. Formula: the layer's (attn_encoder_layer_forward; Vaswani et
 * al. 2017 §3.1, D2L §10.7) on each new row, its attention restricted to
 * the keys before it (the decoder's masked self-attention, §3.2.3).
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, cache; seqs or cu_q with
 * n_seqs > 0; src or out with rows), ATTN_ERR_INVALID_ARGUMENT (n_seqs
 * negative, a sequence not open or listed twice, cu_q not starting at 0 or
 * decreasing, out overlapping src without being it), ATTN_ERR_STATE
 * (parameters not set; the layer not causal; not enough free pages for
 * every sequence's new tokens, as attn_mha_forward_cached counts them),
 * ATTN_ERR_SHAPE_MISMATCH (the cache's heads or dims not the layer's),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (total_q above INT_MAX),
 * ATTN_ERR_OUT_OF_MEMORY. Every check and allocation comes first: on
 * failure the cache and out are unchanged. Memory: the context's workspace
 * of total_q · (6·d_model + dim_feedforward) floats plus the attention's.
 * Added in 1.1.0. Not thread-safe with other calls on the same cache;
 * concurrent calls may share the layer. */
ATTN_API attn_status attn_encoder_layer_forward_cached(attn_context *ctx,
                                                       const attn_encoder_layer *layer,
                                                       attn_kv_cache *cache, int64_t n_seqs,
                                                       const int64_t *seqs, const int64_t *cu_q,
                                                       const float *src, float *out);

/** Exact softmax attention over the union of n_parts disjoint key sets,
 * from each part's output and log-sum-exp for the same queries
 * (flash-decoding; ring attention, Liu et al. 2023):
 * @code{.unparsed}
 *   lse = log Σ_p exp(lse_p),   out = Σ_p exp(lse_p − lse) · out_p
 *   outs  n_parts pointers to [rows, dim_v]     lses  n_parts pointers to [rows]
 *   out   [rows, dim_v]                         lse   [rows]
 * @endcode
 * A part whose lse is −∞ (or +∞, FlashAttention-2's empty marker)
 * contributes nothing, whatever its out holds; a row empty in every part
 * gets zeros and −∞. NaN in a part's lse or in a contributing out gives
 * NaN. out and lse may be outs[0] and lses[0] (in place); no other overlap.
 * Computed in double per row. Returns ATTN_ERR_NULL_POINTER (outs, lses, a
 * part, out or lse with rows > 0), ATTN_ERR_INVALID_ARGUMENT (n_parts < 1,
 * rows < 0, dim_v < 1, an overlap other than out = outs[0] and lse =
 * lses[0]), ATTN_ERR_SIZE_OVERFLOW; nothing is written on failure.
 * Thread-safe. */
ATTN_API attn_status attn_merge_partials(int64_t n_parts, int64_t rows, int64_t dim_v,
                                         const float *const *outs, const float *const *lses,
                                         float *out, float *lse);

/** @} */

#endif /* ATTN_DECODING_H */
