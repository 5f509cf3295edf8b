/*
 * attn_modifiers.h — libattn's score modifiers: sliding window, softcap, ALiBi (v1.1).
 *
 * Part of the public header: programs include <attn.h>, which includes this
 * file inside its extern "C" block, after the types it uses. The general
 * rules (tensors, ownership, thread-safety, errors, versioning) are attn.h's.
 */
#ifndef ATTN_MODIFIERS_H
#define ATTN_MODIFIERS_H

#ifndef ATTN_H_INSIDE
#error "include <attn.h>, not <attn_modifiers.h>"
#endif

/**
 * @defgroup modifiers Score modifiers: sliding window, softcap, ALiBi (v1.1)
 *
 * Settings of an SDPA op (attn_sdpa_set_*) or a multi-head layer
 * (attn_mha_set_*, with its num_heads as heads_q) that change the logits
 * between the scaled product and the softmax. Each one applies, with the
 * same meaning, in the forward (inference and training), in the backward
 * and in the cached forward of the decoding calls. All are off by default.
 *
 * They are measured from the query's aligned position p, the point of the
 * key axis facing query row i:
 * @code{.unparsed}
 *   p = i                     with ATTN_CAUSAL_TOP_LEFT
 *   p = i + len_kv − len_q    with ATTN_CAUSAL_BOTTOM_RIGHT, and without causal
 *                             (FlashAttention's alignment: the last query faces
 *                             the last key)
 * @endcode
 * The logit of query i and key j, with s = scale · q_i · k_j, becomes
 * @code{.unparsed}
 *   s = cap · tanh(s / cap)          softcap (Gemma 2; 0 = off)
 *   s = s + bias_ij                  the mask's additive bias
 *   s = s − slope_h · |p − j|        ALiBi (Press et al. 2022, §3)
 * @endcode
 * in this order (scale, softcap, bias, ALiBi: a masked key stays masked and
 * never becomes −cap), and key j is visible only when the masks allow it
 * and p − left <= j <= p + right (the window, inclusive at both ends, as
 * FlashAttention's window_size and ONNX Attention-25's left/right window
 * sizes; −1 leaves a side unbounded). A row left with no visible key gives
 * zeros and lse −∞ as with the other masks.
 *
 * Converters: HF transformers' sliding_window = W (W keys including the
 * query's own) is (left, right) = (W − 1, 0) with causal; llama.cpp's n_swa
 * (STANDARD) is (n_swa − 1, 0); xFormers' and MLX's window_size = W is
 * (W − 1, 0). HF Gemma-2's attn_logit_softcapping is cap. FlashAttention's
 * alibi_slopes [heads] are slopes. BLOOM's bias slope·j gives the same
 * weights as ALiBi under causal masking (they differ by a per-row constant)
 * but not without it, where ALiBi's |p − j| is symmetric.
 *
 * The window also makes the computation smaller: a block of query rows
 * computes only the keys some row of it may see, so a window of w keys
 * costs O(len_q · (w + block)) per head instead of O(len_q · len_kv), in
 * the forward and the backward. Keys outside the window of every row of a
 * block are never read (they may hold NaN); a NaN key or value inside
 * another row's window of the same block may reach a row only through the
 * 0·NaN of the P·V product, as with the other masks.
 *
 * Every setter returns ATTN_ERR_NULL_POINTER (op or mha NULL) and the ones
 * below; on failure the setting is unchanged. On an MHA layer, a change
 * makes activations filled before stale (attn_mha_backward: ATTN_ERR_STATE).
 * The setters must not run while another call uses the op or layer.
 * Added in 1.1.0.
 * @{
 */

/** Sets the sliding window: key j is visible to the query at aligned
 * position p only if p − left <= j <= p + right; −1 leaves that side
 * unbounded; (−1, −1), the default, is no window. With causal set, right is
 * moot beyond 0. Returns ATTN_ERR_INVALID_ARGUMENT (left or right below −1). */
ATTN_API attn_status attn_sdpa_set_window(attn_sdpa *op, int64_t left, int64_t right);

/** Sets the logit softcap: s = cap · tanh(s / cap) after the scale, before
 * bias, ALiBi and masks; cap = 0 (the default) turns it off. The backward
 * multiplies dS by 1 − tanh²(s / cap). Returns ATTN_ERR_INVALID_ARGUMENT
 * (cap negative, NaN or infinite). */
ATTN_API attn_status attn_sdpa_set_softcap(attn_sdpa *op, float cap);

/** Turns ALiBi on: head h's logits get −slopes[h] · |p − j|. slopes
 * [heads_q] is copied; NULL takes the slopes of Press et al. 2022
 * (ofirpress/attention_with_linear_biases get_slopes: 2^(−8(h+1)/n) for n a
 * power of two; otherwise those of the largest power of two c below n, then
 * 2^(−8(2k+1)/(2c)) for the rest), which FlashAttention, ggml (max_bias 8)
 * and HF use. The bias is symmetric in p − j, so without causal masking it
 * also lowers keys after p. Returns ATTN_ERR_INVALID_ARGUMENT (a slope NaN
 * or infinite), ATTN_ERR_OUT_OF_MEMORY. */
ATTN_API attn_status attn_sdpa_set_alibi(attn_sdpa *op, const float *slopes);

/** Turns ALiBi off (the default). Returns ATTN_ERR_NULL_POINTER. */
ATTN_API attn_status attn_sdpa_clear_alibi(attn_sdpa *op);

/** attn_sdpa_set_window for the multi-head layer's attention. */
ATTN_API attn_status attn_mha_set_window(attn_mha *mha, int64_t left, int64_t right);
/** attn_sdpa_set_softcap for the multi-head layer's attention. */
ATTN_API attn_status attn_mha_set_softcap(attn_mha *mha, float cap);
/** attn_sdpa_set_alibi for the multi-head layer's attention: slopes
 * [num_heads], copied; NULL for Press et al.'s. */
ATTN_API attn_status attn_mha_set_alibi(attn_mha *mha, const float *slopes);
/** attn_sdpa_clear_alibi for the multi-head layer. */
ATTN_API attn_status attn_mha_clear_alibi(attn_mha *mha);

/** @} */

#endif /* ATTN_MODIFIERS_H */
