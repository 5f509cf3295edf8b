/*
 * attn_rope.h — libattn's rotary position embedding, RoPE (v1.1).
 *
 * Part of the public header: programs include <attn.h>, which includes this
 * file inside its extern "C" block, after the types it uses. The general
 * rules (tensors, ownership, thread-safety, errors, versioning) are attn.h's.
 */
#ifndef ATTN_ROPE_H
#define ATTN_ROPE_H

#ifndef ATTN_H_INSIDE
#error "include <attn.h>, not <attn_rope.h>"
#endif

/**
 * @defgroup rope Rotary position embedding (RoPE, v1.1)
 *
 * Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
 * Embedding", §3.4.2 (eq. 34): the first rotary_dim features of each head
 * are rotary_dim/2 pairs, and pair i of the row at position p is rotated by
 * θ = p · inv_freq[i]:
 * @code{.unparsed}
 *   (x1, x2) -> (x1·cos θ − x2·sin θ,  x2·cos θ + x1·sin θ)
 *   ATTN_ROPE_HALF:         x1 = x[i], x2 = x[i + rotary_dim/2]   (GPT-NeoX, Llama,
 *                           HF rotate_half, ONNX interleaved = 0)
 *   ATTN_ROPE_INTERLEAVED:  x1 = x[2i], x2 = x[2i + 1]            (GPT-J, Meta's
 *                           complex form x·e^{iθ}, ONNX interleaved = 1)
 *   inv_freq[i] = base^(−2i / rotary_dim)
 * @endcode
 * Features from rotary_dim on are left as they are (partial rotary, as
 * GPT-NeoX's rotary_pct and ONNX's rotary_embedding_dim; ONNX's 0 is
 * rotary_dim = head_dim). The frequencies come from exactly one source, the
 * last one set: base (at create), a linear or Llama-3 scaling of base's,
 * the caller's inv_freq, or the caller's cos/sin tables.
 *
 * Accuracy: inv_freq is kept in double, and θ is formed and its cos and sin
 * taken in double, so a row at position 10^6 is rotated to float32
 * rounding (a float32 θ, as most PyTorch code forms it, is ~0.03 rad off
 * there).
 *
 * Converters: HF transformers' rope_theta is base, partial_rotary_factor ·
 * head_dim is rotary_dim, rope_scaling {"rope_type": "linear", "factor"} is
 * attn_rope_set_linear_scaling and {"rope_type": "llama3", ...} is
 * attn_rope_set_llama3_scaling; HF's default inv_freq is computed in float32
 * from the same formula. llama.cpp's LLAMA_ROPE_TYPE_NEOX is
 * ATTN_ROPE_HALF and LLAMA_ROPE_TYPE_NORM is ATTN_ROPE_INTERLEAVED;
 * FlashAttention's rotary_interleaved = True is ATTN_ROPE_INTERLEAVED.
 *
 * A rope is immutable during attn_rope_apply, so one rope may serve many
 * threads at once; its setters must not run during a call that uses it.
 * attn_mha_set_rope copies it. Added in 1.1.0.
 * @{
 */

/** The pairing of the rotated features. Values fixed forever. */
typedef enum attn_rope_style {
    ATTN_ROPE_HALF = 0,        /**< pairs (x[i], x[i + rotary_dim/2]) */
    ATTN_ROPE_INTERLEAVED = 1  /**< pairs (x[2i], x[2i + 1]) */
} attn_rope_style;

/** A rotary embedding: head size, rotated features, frequencies. */
typedef struct attn_rope attn_rope;

/** Creates a rotary embedding for heads of head_dim features, rotating the
 * first rotary_dim (even, 2 <= rotary_dim <= head_dim) with frequencies
 * base^(−2i/rotary_dim) (base > 1: 10000 in the paper and Llama 2, 500000
 * in Llama 3). Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (head_dim < 2, rotary_dim odd or out of range, base not finite or <= 1,
 * style not an attn_rope_style), ATTN_ERR_OUT_OF_MEMORY. *rope untouched on
 * failure. Release with attn_rope_destroy. Thread-safe. */
ATTN_API attn_status attn_rope_create(attn_rope **rope, int64_t head_dim, int64_t rotary_dim,
                                      float base, attn_rope_style style);

/** Frees the rope. NULL is a no-op. */
ATTN_API void attn_rope_destroy(attn_rope *rope);

/** Linear position interpolation (Chen et al. 2023; HF rope_type "linear"):
 * θ = (p / factor) · inv_freq, i.e. base's frequencies divided by factor.
 * Replaces any other frequency source. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (factor not finite or <= 0). */
ATTN_API attn_status attn_rope_set_linear_scaling(attn_rope *rope, float factor);

/** Llama 3.1's frequency scaling (HF rope_type "llama3",
 * _compute_llama3_parameters): with wavelength λ_i = 2π / inv_freq[i] and
 * L = original_max_positions, frequencies with λ > L / low_freq_factor are
 * divided by factor, those with λ < L / high_freq_factor kept, and those
 * between blended: (1 − s)·inv_freq/factor + s·inv_freq with
 * s = (L/λ − low_freq_factor) / (high_freq_factor − low_freq_factor).
 * Llama 3.1 uses (8, 1, 4, 8192). Replaces any other frequency source.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (factor or
 * low_freq_factor not finite or <= 0, high_freq_factor not finite or
 * <= low_freq_factor, original_max_positions < 1). */
ATTN_API attn_status attn_rope_set_llama3_scaling(attn_rope *rope, float factor,
                                                  float low_freq_factor, float high_freq_factor,
                                                  int64_t original_max_positions);

/** The caller's frequencies: inv_freq [rotary_dim/2], copied (YaRN, NTK or
 * any scheme computed elsewhere). Replaces any other frequency source.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (a value NaN or
 * infinite). */
ATTN_API attn_status attn_rope_set_inv_freq(attn_rope *rope, const float *inv_freq);

/** The caller's tables instead of angles (ONNX RotaryEmbedding's cos_cache
 * and sin_cache): cos, sin [n_positions, rotary_dim/2], copied; row p gives
 * the cos and sin of every pair at position p (the values are used as
 * given, so a magnitude folded in, as YaRN's attention factor, is applied
 * once). Positions must then be in [0, n_positions). Replaces any other
 * frequency source. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (n_positions < 1, a value NaN or infinite),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY; the rope is unchanged on
 * failure. */
ATTN_API attn_status attn_rope_set_tables(attn_rope *rope, const float *cos, const float *sin,
                                          int64_t n_positions);

/** Rotates x in place:
 * @code{.unparsed}
 *   x          [batch, heads, seq, head_dim] (ATTN_LAYOUT_BHSD) or
 *              [batch, seq, heads, head_dim] (ATTN_LAYOUT_BSHD; a [B, S, H·D]
 *              projection as it comes out of a linear layer)
 *   positions  [batch, seq] position of each row, or NULL for start, start + 1, ...
 *              in every batch row
 *   inverse    0: rotate by θ; 1: by −θ (the backward: the rotation's transpose,
 *              so d_x = attn_rope_apply(d_y, inverse = 1); also undoing a rotation)
 * @endcode
 * Positions may be negative with angles (a rotation by a negative angle:
 * what matters is p − p' between a query and a key); with tables they must
 * be in [0, n_positions). Runs on the context's threads, over positions;
 * every head of a position uses one cos/sin row.
 * Returns ATTN_ERR_NULL_POINTER (ctx, rope, or x with elements),
 * ATTN_ERR_INVALID_ARGUMENT (layout, inverse not 0 or 1, batch or seq
 * negative, heads < 1, a position outside the tables or start + seq
 * overflowing), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY (scratch of
 * rotary_dim floats per thread); x is untouched on failure. Thread-safe with
 * a const rope, each thread with its own context. */
ATTN_API attn_status attn_rope_apply(attn_context *ctx, const attn_rope *rope,
                                     attn_layout layout, int64_t batch, int64_t heads,
                                     int64_t seq, float *x, const int64_t *positions,
                                     int64_t start, int inverse);

/** Gives the multi-head layer a copy of rope (NULL removes it): every
 * forward rotates the projected queries and keys (not the values) before
 * the attention, and the backward rotates their gradients back. Key j is at
 * position j; query i at its aligned position (the score modifiers' p: i
 * with ATTN_CAUSAL_TOP_LEFT, i + len_kv − len_q otherwise), so that
 * self-attention rotates both at 0, 1, ...; attn_mha_forward_cached rotates
 * the new tokens at the positions after the cached ones. Activations filled
 * before are then stale. Returns ATTN_ERR_NULL_POINTER (mha),
 * ATTN_ERR_SHAPE_MISMATCH (the rope's head_dim is not embed_dim / num_heads),
 * ATTN_ERR_OUT_OF_MEMORY; the layer is unchanged on failure. With tables, a
 * forward whose positions fall outside them returns
 * ATTN_ERR_INVALID_ARGUMENT. Not thread-safe with other calls on the same
 * mha. */
ATTN_API attn_status attn_mha_set_rope(attn_mha *mha, const attn_rope *rope);

/** @} */

#endif /* ATTN_ROPE_H */
