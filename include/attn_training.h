/*
 * attn_training.h — libattn's gradients of the attention calls, the activations they keep, dropout (v1.1).
 *
 * Part of the public header: programs include <attn.h>, which includes this
 * file inside its extern "C" block, after the types it uses. The general
 * rules (tensors, ownership, thread-safety, errors, versioning) are attn.h's.
 */
#ifndef ATTN_TRAINING_H
#define ATTN_TRAINING_H

#ifndef ATTN_H_INSIDE
#error "include <attn.h>, not <attn_training.h>"
#endif

/* ======================================================================
 * v1.1: training
 * ====================================================================== */
/**
 * @defgroup training Training: gradients (v1.1)
 *
 * The backward passes of the attention calls, so that a program can train
 * with libattn. Conventions (the same for every gradient call): every
 * gradient output is overwritten completely, never accumulated into; an
 * output passed as NULL is not computed; a query row with no visible key
 * gets zero gradients, never NaN. Added in 1.1.0: check
 * attn_version_number() >= 10100 before calling them from a program that
 * may run with an older libattn.so.1.
 * @{
 */

/** What a layer's training forward keeps for its backward
 * (attn_activations_create). */
typedef struct attn_activations attn_activations;

/** Sets dropout on the attention weights of every later attn_sdpa_forward
 * and attn_sdpa_backward with this op: after the softmax, each weight is
 * kept with probability 1 − p and then scaled by 1 / (1 − p), or set to 0
 * (Srivastava et al. 2014; PyTorch's dropout_p of
 * scaled_dot_product_attention and nn.MultiheadAttention). The weights that
 * attn_sdpa_forward writes are these dropped, rescaled ones (the matrix
 * that multiplies v, as nn.MultiheadAttention returns them); lse is the
 * softmax's, before dropout. p = 0 (the default) disables dropout: set it
 * for inference.
 *
 * The keep decision of weight (b, h, i, j) is a pure function of (seed, b,
 * h, i, j): Philox 4x32-10 (Salmon et al. 2011, "Parallel Random Numbers:
 * As Easy as 1, 2, 3") with key (seed mod 2^32, seed >> 32) and counter
 * (j / 4, i, b·heads_q + h, 0), whose word j mod 4 keeps the weight when it
 * is >= round(p · 2^32). So forward and backward agree without storing a
 * mask, the thread count never changes it, and a program draws a fresh
 * mask per training step by passing a new seed (e.g. seed = step).
 * attn_dropout_keep_mask writes the decisions out.
 *
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (p NaN or outside
 * [0, 1)). A forward or backward with p > 0 on shapes whose batch·heads_q,
 * len_q or len_kv / 4 reach 2^32 returns ATTN_ERR_UNSUPPORTED.
 * Not thread-safe with calls that use the op at the same time. */
ATTN_API attn_status attn_sdpa_set_dropout(attn_sdpa *op, float p, uint64_t seed);

/** Writes the keep mask that attn_sdpa_forward and attn_sdpa_backward use
 * with this op's dropout setting: keep [B, Hq, Lq, Lkv] (always this order),
 * 1 where the weight is kept, 0 where it is dropped; all 1 when the op's p
 * is 0. It describes dropout only, not the attention masks. For tests and
 * for programs that check or store the mask.
 * Returns ATTN_ERR_NULL_POINTER (op, or keep with B·Hq·Lq·Lkv > 0),
 * ATTN_ERR_SIZE_OVERFLOW (the mask's size does not fit in size_t),
 * ATTN_ERR_UNSUPPORTED (as attn_sdpa_set_dropout). Thread-safe for a const
 * op. */
ATTN_API attn_status attn_dropout_keep_mask(const attn_sdpa *op, uint8_t *keep);

/** Gradients of attn_sdpa_forward: given d_out = ∂L/∂out, writes
 * d_q = ∂L/∂q, d_k = ∂L/∂k and d_v = ∂L/∂v for the forward made with the
 * same op (shapes, layout, scale, causal, dropout p and seed) and the same
 * mask. With dropout, the forward's keep mask Z is regenerated: dV uses
 * the dropped weights, and dP is multiplied by Z before dS.
 *
 * Formula: the FlashAttention-2 backward (Dao 2023, "FlashAttention-2:
 * Faster Attention with Better Parallelism and Work Partitioning",
 * Algorithm 2). With P the forward's weights, recomputed block by block
 * from the logits and lse as P = exp(scale·q·kᵀ + bias − lse):
 * @code{.unparsed}
 *   dV = Pᵀ dO,  dP = dO Vᵀ,  D_i = Σ_c dO[i,c] · O[i,c],
 *   dS = P ∘ (dP − D),  dQ = scale · dS K,  dK = scale · dSᵀ Q
 * @endcode
 * (with dropout: dV = (P ∘ Z)ᵀ dO and dP = (dO Vᵀ) ∘ Z, Z = keep / (1 − p)).
 * Shapes (layout of the op, as attn_sdpa_forward):
 * @code{.unparsed}
 *   q, k, v  the forward's inputs
 *   mask     the forward's mask (NULL if it had none); its arrays must hold
 *            the same values
 *   out      [B, Hq, Lq, Dv]  the forward's out (layout of q)
 *   lse      [B, Hq, Lq]      the forward's lse (always this order), required;
 *            -INFINITY or +INFINITY mark a row with no visible key
 *   d_out    [B, Hq, Lq, Dv]  ∂L/∂out (layout of q)
 *   d_q      NULL or [B, Hq, Lq, Dqk]  (layout of q), written completely
 *   d_k      NULL or [B, Hkv, Lkv, Dqk] (layout of k), written completely;
 *            with GQA/MQA the sum over the query heads of each group
 *   d_v      NULL or [B, Hkv, Lkv, Dv]  (layout of v), likewise
 * @endcode
 * Keys the forward never read (at or beyond a valid length, past the causal
 * limit of every row of a block) are not read here either, and get zero
 * gradients. A masked key's NaN value never reaches d_q or d_k (its weight
 * 0 makes its dS exactly 0); a masked key's NaN in k can reach d_q through
 * the 0·NaN of the dS·K product when the key is masked by a boolean mask or
 * a -INFINITY bias, as in the forward's P·V.
 *
 * Results are bitwise identical for any number of libattn threads (for a
 * given number of BLAS threads per GEMM): each (batch row, kv head) is
 * reduced in one fixed order. Extra memory: 2 × block × Lkv floats per
 * thread (3 × with a softcap, for its 1 − tanh² factors), where a block of query rows holds at most 4 MiB of logits (256
 * rows up to Lkv = 4096, down to 64 from Lkv > 8192; 64 with causal): at
 * most ~8 MiB per thread, never Lq × Lkv (measured at Lq = Lkv = 16384, 8
 * heads, d 64: 11.9 MiB beyond the inputs and gradients on 2 threads).
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, op, or a non-empty q, k, v, out, lse
 * or d_out NULL), ATTN_ERR_SHAPE_MISMATCH (mask shapes do not fit the op),
 * ATTN_ERR_INVALID_ARGUMENT (a valid length negative or above len_kv; a
 * gradient output overlapping an input or another gradient output),
 * ATTN_ERR_OUT_OF_MEMORY (scratch or threads could not be made). On failure
 * no output byte is written.
 * Thread-safety: concurrent calls may share op and mask, never ctx. */
ATTN_API attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa *op,
                                        const float *q, const float *k, const float *v,
                                        const attn_mask *mask, const float *out,
                                        const float *lse, const float *d_out, float *d_q,
                                        float *d_k, float *d_v);

/** What a layer's training forward keeps for its backward (an opaque,
 * growable buffer owned by the caller): copies of the inputs, the
 * projections, the attention output and its lse, the shapes, which layer
 * filled it and the mask pointer. O(batch · len · embed_dim) floats, never
 * len_q × len_kv. One object serves one forward/backward pair at a time: a
 * training forward overwrites what the last one kept. It grows as needed
 * and keeps its memory for the next step.
 * Returns ATTN_ERR_NULL_POINTER (act NULL), ATTN_ERR_OUT_OF_MEMORY.
 * Thread-safety: one thread at a time per object. */
ATTN_API attn_status attn_activations_create(attn_activations **act);

/** Frees act and what it holds. NULL is a no-op. */
ATTN_API void attn_activations_destroy(attn_activations *act);

/** The number of floats in the layer's flat parameter vector (see
 * attn_mha_get_params): 2·E² + Hkv·hd·(kdim + vdim), plus E + 2·Hkv·hd + E
 * with bias. Returns ATTN_ERR_NULL_POINTER (mha or count). Thread-safe for
 * a const mha. */
ATTN_API attn_status attn_mha_param_count(const attn_mha *mha, int64_t *count);

/** Copies the layer's parameters into params [count], in the order of
 * nn.MultiheadAttention's named_parameters():
 * @code{.unparsed}
 *   Wq [E, E], Wk [Hkv·hd, kdim], Wv [Hkv·hd, vdim]   in_proj_weight's three row
 *                       blocks when kdim = vdim = E, else q/k/v_proj_weight
 *   bq [E], bk [Hkv·hd], bv [Hkv·hd]                  in_proj_bias (bias = 1 only)
 *   Wo [E, E]                                          out_proj.weight
 *   bo [E]                                             out_proj.bias (bias = 1 only)
 * @endcode
 * (E = embed_dim, hd = head_dim, Hkv = num_kv_heads; with Hkv = num_heads a
 * state_dict maps 1:1, in this order). So an optimizer is one loop over one
 * array, and attn_mha_backward's d_params has the same layout.
 * Returns ATTN_ERR_NULL_POINTER (mha or params), ATTN_ERR_STATE (a
 * projection not set yet). Thread-safe for a const mha. */
ATTN_API attn_status attn_mha_get_params(const attn_mha *mha, float *params);

/** Copies params [count] (the layout of attn_mha_get_params) into the
 * layer, setting all four projections; activations filled before are then
 * stale (attn_mha_backward returns ATTN_ERR_STATE for them). Returns
 * ATTN_ERR_NULL_POINTER. Not thread-safe with other calls on the same mha. */
ATTN_API attn_status attn_mha_set_params(attn_mha *mha, const float *params);

/** Dropout on the layer's attention weights in attn_mha_forward_train (and
 * so in attn_mha_backward), as nn.MultiheadAttention's dropout in training
 * mode: p in [0, 1), the mask from seed as attn_sdpa_set_dropout describes
 * (with b, h the batch row and head of the layer's attention). Never
 * applied by attn_mha_forward, the inference call: the layer cannot forget
 * eval mode. Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (p
 * NaN or outside [0, 1)). */
ATTN_API attn_status attn_mha_set_dropout(attn_mha *mha, float p, uint64_t seed);

/** attn_mha_forward for training: the same out and weights (with dropout if
 * set), and fills act with what attn_mha_backward needs. Statuses as
 * attn_mha_forward, plus ATTN_ERR_NULL_POINTER (act),
 * ATTN_ERR_UNSUPPORTED (dropout set and batch · num_heads, len_q or
 * len_kv / 4 reach 2^32) and ATTN_ERR_OUT_OF_MEMORY when act cannot grow
 * (act is then empty). act keeps a pointer to mask (caller memory) for the
 * backward. Thread-safety: concurrent calls may share mha and mask, never
 * ctx or act. */
ATTN_API attn_status attn_mha_forward_train(attn_context *ctx, const attn_mha *mha,
                                            int64_t batch, int64_t len_q, int64_t len_kv,
                                            const float *query, const float *key,
                                            const float *value, const attn_mask *mask,
                                            float *out, float *weights, attn_activations *act);

/** Gradients of the last attn_mha_forward_train that filled act, given
 * d_out = ∂L/∂out [batch, len_q, embed_dim]: d_query [batch, len_q,
 * embed_dim], d_key [batch, len_kv, kdim], d_value [batch, len_kv, vdim]
 * and d_params [count] (the layout of attn_mha_get_params), each NULL or
 * overwritten. The mask that forward used must still hold the same values;
 * the layer's parameters must not have changed since (ATTN_ERR_STATE).
 * Self-attention: when two or three of d_query, d_key, d_value are the same
 * pointer, that buffer receives their sum (the gradient with respect to the
 * one input passed as query, key and value).
 * Formula: the chain rule through out = A·Woᵀ + bo, the FlashAttention-2
 * backward of attn_sdpa_backward for A, and the three input projections.
 * Returns ATTN_ERR_NULL_POINTER (ctx, mha, act, a non-empty d_out),
 * ATTN_ERR_STATE (act empty, filled by another layer, or the layer's
 * parameters set since), ATTN_ERR_INVALID_ARGUMENT (an output overlapping
 * d_out or, unless equal as above, another output), ATTN_ERR_OUT_OF_MEMORY.
 * Bitwise the same for any number of libattn threads (for a given number of
 * BLAS threads per GEMM). act is only read: the backward may be repeated.
 * Thread-safety: concurrent calls may share mha and act, never ctx. */
ATTN_API attn_status attn_mha_backward(attn_context *ctx, const attn_mha *mha,
                                       const attn_activations *act, const float *d_out,
                                       float *d_query, float *d_key, float *d_value,
                                       float *d_params);

/** The number of floats in the additive layer's flat parameter vector:
 * hidden · (query_dim + key_dim + 1). Returns ATTN_ERR_NULL_POINTER (op or
 * count). Thread-safe for a const op. */
ATTN_API attn_status attn_additive_param_count(const attn_additive *op, int64_t *count);

/** Copies the parameters into params [count] in the order of
 * attn_additive_set_weights: W_q [hidden, query_dim], W_k [hidden, key_dim],
 * w_v [hidden]. (D2L's AdditiveAttention module lists W_k first in its
 * state_dict, as W_k.weight, W_q.weight, w_v.weight with w_v as a
 * [1, hidden] matrix: map a state_dict by name, not by position.)
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_STATE (weights not set yet).
 * Thread-safe for a const op. */
ATTN_API attn_status attn_additive_get_params(const attn_additive *op, float *params);

/** Copies params [count] (the layout of attn_additive_get_params) into the
 * op; activations filled before are then stale (attn_additive_backward
 * returns ATTN_ERR_STATE for them). Returns ATTN_ERR_NULL_POINTER. Not
 * thread-safe with other calls on the same op. */
ATTN_API attn_status attn_additive_set_params(attn_additive *op, const float *params);

/** attn_additive_forward for training: the same out and weights, and fills
 * act for attn_additive_backward (copies of the inputs, the projected
 * queries and keys, and out; act keeps a pointer to mask). Statuses as
 * attn_additive_forward, plus ATTN_ERR_NULL_POINTER (act),
 * ATTN_ERR_OUT_OF_MEMORY when act cannot grow (act is then empty).
 * Thread-safety: concurrent calls may share op and mask, never ctx or act. */
ATTN_API attn_status attn_additive_forward_train(attn_context *ctx, const attn_additive *op,
                                                 int64_t batch, int64_t len_q, int64_t len_kv,
                                                 int64_t dim_v, const float *queries,
                                                 const float *keys, const float *values,
                                                 const attn_mask *mask, float *out,
                                                 float *weights, attn_activations *act);

/** Gradients of the last attn_additive_forward_train that filled act, given
 * d_out [batch, len_q, dim_v]: d_queries [batch, len_q, query_dim], d_keys
 * [batch, len_kv, key_dim], d_values [batch, len_kv, dim_v], d_params
 * [count]; each NULL or overwritten. With t = tanh(W_q q_i + W_k k_j) and
 * dS_ij = P_ij (d_out_i · v_j − d_out_i · out_i) (the softmax Jacobian):
 * @code{.unparsed}
 *   ∂/∂(W_q q_i) = Σ_j dS_ij · w_v ∘ (1 − t²),  ∂/∂(W_k k_j) = Σ_i (same),
 *   ∂/∂w_v = Σ_ij dS_ij · t,  d_values_j = Σ_i P_ij d_out_i,
 * @endcode
 * then through the two projections (D2L §10.3.2; Bahdanau et al. 2015). As
 * for attn_mha_backward, outputs of the same shape passed as the same
 * pointer receive their sum (keys and values are often one tensor in D2L),
 * and a mismatched act is ATTN_ERR_STATE. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_STATE, ATTN_ERR_INVALID_ARGUMENT (overlapping outputs),
 * ATTN_ERR_OUT_OF_MEMORY. The same bits for any number of threads. act is
 * only read. Thread-safety: concurrent calls may share op and act, never
 * ctx. */
ATTN_API attn_status attn_additive_backward(attn_context *ctx, const attn_additive *op,
                                            const attn_activations *act, const float *d_out,
                                            float *d_queries, float *d_keys, float *d_values,
                                            float *d_params);

/** Gradients of attn_nadaraya_watson: given d_out = ∂L/∂out [n_queries],
 * writes ∂L/∂queries, ∂L/∂keys, ∂L/∂values and ∂L/∂w, the kernel width of
 * D2L §10.2.4's parametric regression, for the same queries, keys, values
 * and w. With a_ij the weights and out_i = Σ_j a_ij v_j (D2L eq. 10.2.6):
 * @code{.unparsed}
 *   dS_ij       = a_ij · d_out_i · (v_j − out_i)          (softmax Jacobian)
 *   d_queries_i = −Σ_j dS_ij · (x_i − k_j) · w²
 *   d_keys_j    =  Σ_i dS_ij · (x_i − k_j) · w²
 *   d_values_j  =  Σ_i a_ij · d_out_i
 *   d_w         = −Σ_ij dS_ij · (x_i − k_j)² · w
 * @endcode
 * d_queries [n_queries], d_keys [n_keys], d_values [n_keys] and d_w (one
 * float) may each be NULL (not computed); each is overwritten. With
 * n_keys = 0 every gradient is 0. Sums run over the queries in order on the
 * calling thread, in double, rounded once to float: the same bits every
 * call.
 * Returns ATTN_ERR_NULL_POINTER (ctx, or a non-empty queries, keys, values
 * or d_out NULL), ATTN_ERR_INVALID_ARGUMENT (a negative count, w not finite,
 * an output overlapping an input or another output), ATTN_ERR_SIZE_OVERFLOW,
 * ATTN_ERR_UNSUPPORTED (n_keys above INT_MAX), ATTN_ERR_OUT_OF_MEMORY. On
 * failure no output byte is written. Thread-safety: as attn_nadaraya_watson
 * (one context per thread). */
ATTN_API attn_status attn_nadaraya_watson_backward(attn_context *ctx, int64_t n_queries,
                                                   int64_t n_keys, const float *queries,
                                                   const float *keys, const float *values,
                                                   float w, const float *d_out,
                                                   float *d_queries, float *d_keys,
                                                   float *d_values, float *d_w);

/** @} */

#endif /* ATTN_TRAINING_H */
