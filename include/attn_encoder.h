/*
 * attn_encoder.h — libattn's the Transformer encoder layer and layer normalisation (v1.1).
 *
 * Part of the public header: programs include <attn.h>, which includes this
 * file inside its extern "C" block, after the types it uses. The general
 * rules (tensors, ownership, thread-safety, errors, versioning) are attn.h's.
 */
#ifndef ATTN_ENCODER_H
#define ATTN_ENCODER_H

#ifndef ATTN_H_INSIDE
#error "include <attn.h>, not <attn_encoder.h>"
#endif

/**
 * @defgroup encoder Transformer encoder layer (PyTorch nn.TransformerEncoderLayer numbers, v1.1)
 *
 * One layer of the Transformer's encoder (Vaswani et al. 2017 §3.1; D2L
 * §10.7.2-10.7.4): multi-head self-attention and a position-wise feed-forward
 * network, each wrapped in a residual connection and a layer normalisation
 * ("add & norm"). With x = src [batch, len, d_model], SA the self-attention
 * of the multi-head layer above (num_heads = nhead, bias, no GQA), LN the
 * layer normalisation of Ba et al. 2016 over d_model (biased variance, eps
 * layer_norm_eps, then weight and bias) and act ReLU or the exact GELU
 * x·Φ(x) = x/2·(1 + erf(x/√2)) (Hendrycks and Gimpel 2016):
 *
 * @code{.unparsed}
 *   FF(y) = linear2(drop(act(linear1(y))))        linear1: d_model → dim_feedforward
 *   post-norm (norm_first = 0; Vaswani, D2L, UvA tutorial 6):
 *     h   = LN1(x + drop1(SA(x)))
 *     out = LN2(h + drop2(FF(h)))
 *   pre-norm (norm_first = 1; GPT-2, Xiong et al. 2020):
 *     h   = x + drop1(SA(LN1(x)))
 *     out = h + drop2(FF(LN2(h)))
 * @endcode
 *
 * With the parameters of a PyTorch layer (see attn_encoder_layer_get_params)
 * the numbers are those of nn.TransformerEncoderLayer(d_model, nhead,
 * dim_feedforward, dropout, activation, layer_norm_eps, batch_first=True,
 * norm_first) of PyTorch 1.13 to float32 rounding, and the gradients those of
 * its autograd. Masks are the multi-head layer's (attn_mha_forward): PyTorch's
 * src_key_padding_mask of right-padded sequences is attn_mask_set_kv_lengths,
 * its bool src_mask is the logical NOT given to attn_mask_set_bool, a float
 * src_mask is attn_mask_set_bias, and its causal triangle is
 * attn_encoder_layer_set_causal(ATTN_CAUSAL_TOP_LEFT). A query that sees no
 * key gets zeros from the attention (PyTorch: NaN), then the rest of the
 * layer as usual.
 *
 * Every product goes through cblas_sgemm, over blocks of 256 of the
 * batch × len rows (the attention's as in attn_mha_forward); layer
 * normalisation, the activation, dropout and
 * the residual additions are vectorised loops over the same rows on the
 * context's threads. Memory: O(batch · len · (d_model + dim_feedforward))
 * floats in the context, plus the attention's O(block × len) per thread.
 * Added in 1.1.0.
 * @{
 */

/** The feed-forward activation of attn_encoder_layer_create. Values fixed
 * forever. */
typedef enum attn_activation {
    ATTN_ACTIVATION_RELU = 0, /**< max(x, 0), PyTorch's "relu" (its default) */
    ATTN_ACTIVATION_GELU = 1  /**< x·Φ(x) with the exact erf, PyTorch's "gelu" (not tanh's) */
} attn_activation;

/** A Transformer encoder layer: its shapes, options and parameters. */
typedef struct attn_encoder_layer attn_encoder_layer;

/** Creates a layer of d_model features, nhead heads (head_dim = d_model /
 * nhead) and a feed-forward of dim_feedforward hidden units, with the
 * activation, norm_first (0 = post-norm, 1 = pre-norm) and the layer norms'
 * eps (PyTorch's default 1e-5). Its parameters are unset (forward is
 * ATTN_ERR_STATE) until attn_encoder_layer_set_params; there is no causal
 * mask and no dropout. *layer is written only on success.
 * Returns ATTN_ERR_NULL_POINTER (layer), ATTN_ERR_INVALID_ARGUMENT (d_model,
 * nhead or dim_feedforward < 1; an unknown activation; norm_first not 0 or
 * 1; layer_norm_eps not finite or <= 0), ATTN_ERR_SHAPE_MISMATCH (d_model
 * not a multiple of nhead), ATTN_ERR_SIZE_OVERFLOW (the parameters' bytes
 * do not fit in size_t: so for any d_model above INT_MAX),
 * ATTN_ERR_UNSUPPORTED (dim_feedforward above INT_MAX), ATTN_ERR_OUT_OF_MEMORY.
 * Release with attn_encoder_layer_destroy. Thread-safe. */
ATTN_API attn_status attn_encoder_layer_create(attn_encoder_layer **layer, int64_t d_model,
                                               int64_t nhead, int64_t dim_feedforward,
                                               attn_activation activation, int norm_first,
                                               float layer_norm_eps);

/** Frees the layer. NULL is a no-op. */
ATTN_API void attn_encoder_layer_destroy(attn_encoder_layer *layer);

/** The causal mask of the self-attention (ATTN_CAUSAL_TOP_LEFT: position i
 * sees positions j <= i, PyTorch's generate_square_subsequent_mask; with
 * len_q = len_kv the two alignments are the same), applied with any mask
 * given to forward. Activations filled before are then stale. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (not an attn_causal).
 * Not thread-safe with other calls on the same layer. */
ATTN_API attn_status attn_encoder_layer_set_causal(attn_encoder_layer *layer,
                                                   attn_causal causal);

/** Dropout of the training forward (attn_encoder_layer_forward with act),
 * where PyTorch's layer applies it in training mode: on the attention
 * weights, after the feed-forward activation, and on each block's output
 * before its residual addition (dropout1, dropout2). Each kept value is
 * scaled by 1 / (1 − p). p in [0, 1); a new layer has p = 0 (PyTorch's
 * module default is 0.1: a caller porting a model sets it). Inference
 * (act NULL) never drops.
 *
 * The keep decisions are pure functions of seed, as for
 * attn_sdpa_set_dropout: the attention weights' exactly as there; element
 * (r, c) of the activation's output [batch·len, dim_feedforward] and of
 * each block's output [batch·len, d_model] (r = b·len + i) from the same
 * Philox 4x32-10 and key with counter (c / 4, r mod 2^32, r >> 32, site),
 * word c mod 4, site 1 for the activation, 2 for block 1 and 3 for block 2
 * (the attention's counters end in 0, so no two sites share a draw). So
 * backward regenerates the masks and threads do not change them; pass a
 * new seed per step.
 * Activations filled before are then stale. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (p NaN or outside [0, 1)). Not thread-safe with
 * other calls on the same layer. */
ATTN_API attn_status attn_encoder_layer_set_dropout(attn_encoder_layer *layer, float p,
                                                    uint64_t seed);

/** The number of floats of the layer's flat parameter vector:
 * 4·d² + 4·d (attention) + 2·d·ff + ff + d (feed-forward) + 4·d (norms),
 * d = d_model, ff = dim_feedforward. Returns ATTN_ERR_NULL_POINTER (layer or
 * count). Thread-safe for a const layer. */
ATTN_API attn_status attn_encoder_layer_param_count(const attn_encoder_layer *layer,
                                                    int64_t *count);

/** Copies the parameters into params [count] in the order of
 * nn.TransformerEncoderLayer's named_parameters() (so a state_dict maps 1:1,
 * in order):
 * @code{.unparsed}
 *   self_attn.in_proj_weight [3d, d]   Wq, Wk, Wv (attn_mha_get_params' first blocks)
 *   self_attn.in_proj_bias [3d]        bq, bk, bv
 *   self_attn.out_proj.weight [d, d]
 *   self_attn.out_proj.bias [d]
 *   linear1.weight [ff, d], linear1.bias [ff]
 *   linear2.weight [d, ff], linear2.bias [d]
 *   norm1.weight [d], norm1.bias [d]
 *   norm2.weight [d], norm2.bias [d]
 * @endcode
 * (the first 4·d² + 4·d floats are the layout of attn_mha_get_params).
 * attn_encoder_layer_backward's d_params has the same layout.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_STATE (parameters not set yet).
 * Thread-safe for a const layer. */
ATTN_API attn_status attn_encoder_layer_get_params(const attn_encoder_layer *layer,
                                                   float *params);

/** Copies params [count] (the layout of attn_encoder_layer_get_params) into
 * the layer. Activations filled before are then stale. Returns
 * ATTN_ERR_NULL_POINTER. Not thread-safe with other calls on the same
 * layer. */
ATTN_API attn_status attn_encoder_layer_set_params(attn_encoder_layer *layer,
                                                   const float *params);

/** out [batch, len, d_model] = the layer applied to src [batch, len,
 * d_model], with mask (NULL or as for attn_mha_forward with heads = nhead,
 * len_q = len_kv = len) and the layer's causal mask. out may be the same
 * pointer as src (in place); otherwise they must not overlap.
 *
 * act NULL is inference (no dropout). With act (attn_activations_create),
 * this is the training forward: dropout as set, and act keeps what
 * attn_encoder_layer_backward needs (the input, the attention's tape, the
 * normalisations' inputs and statistics, the feed-forward's hidden
 * activations: batch · len · (8·d_model + 2·dim_feedforward + nhead + 6)
 * floats) and a pointer to mask, which must stay valid and unchanged until
 * the backward.
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, or a non-empty src or out),
 * ATTN_ERR_INVALID_ARGUMENT (batch or len negative, a valid length out of
 * range, out overlapping src without being it), ATTN_ERR_SHAPE_MISMATCH
 * (mask shapes), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (batch·len
 * above INT_MAX; dropout set and batch·nhead, len / 4 reach 2^32),
 * ATTN_ERR_STATE (parameters not set), ATTN_ERR_OUT_OF_MEMORY (act is then
 * empty). On failure out is untouched. Bitwise the same for any number of
 * libattn threads (for a given number of BLAS threads per GEMM).
 * Thread-safety: concurrent calls may share layer and mask, never ctx or
 * act. */
ATTN_API attn_status attn_encoder_layer_forward(attn_context *ctx,
                                                const attn_encoder_layer *layer, int64_t batch,
                                                int64_t len, const float *src,
                                                const attn_mask *mask, float *out,
                                                attn_activations *act);

/** Gradients of the last training attn_encoder_layer_forward that filled
 * act, given d_out = ∂L/∂out [batch, len, d_model]: d_src [batch, len,
 * d_model] and d_params [count] (the layout of
 * attn_encoder_layer_get_params), each NULL (not computed) or overwritten.
 * Formula: the chain rule through the layer (layer norm: dx = rstd·(g −
 * mean(g) − x̂·mean(g·x̂)) with g = dy·weight; GELU: Φ(x) + x·φ(x)), the
 * attention's as attn_mha_backward.
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, act, a non-empty d_out),
 * ATTN_ERR_STATE (act empty, filled by another layer, or the layer's
 * parameters or options set since), ATTN_ERR_INVALID_ARGUMENT (the mask's
 * lengths changed to invalid values; an output overlapping d_out or the
 * other output), ATTN_ERR_OUT_OF_MEMORY. On failure no output byte is
 * written. Bitwise the same for any number of libattn threads. act is only
 * read: the backward may be repeated. Thread-safety: concurrent calls may
 * share layer and act, never ctx. */
ATTN_API attn_status attn_encoder_layer_backward(attn_context *ctx,
                                                 const attn_encoder_layer *layer,
                                                 const attn_activations *act,
                                                 const float *d_out, float *d_src,
                                                 float *d_params);

/** Layer normalisation (Ba, Kiros and Hinton 2016; torch.nn.LayerNorm over
 * the last dimension): for each of `rows` rows of x [rows, features],
 * y = (x − mean) / sqrt(var + eps) · weight + bias, with the biased variance
 * (divided by features) as PyTorch. The encoder layer's norms are this
 * function; a program calls it for the norms around a stack of layers (the
 * final norm of a pre-norm stack, GPT-2's ln_f) or in its own heads.
 * Sums run in double, the mean is kept to more than float precision, so
 * rows far from 0 (1e4 ± 1e-2) keep their digits. weight, bias [features];
 * y [rows, features] may be x (in place) but must not overlap it otherwise,
 * nor weight or bias. Runs on the calling thread; no allocation.
 * Returns ATTN_ERR_NULL_POINTER (a non-empty x or y, weight, bias),
 * ATTN_ERR_INVALID_ARGUMENT (rows < 0, features < 1, eps not finite and > 0,
 * overlaps), ATTN_ERR_SIZE_OVERFLOW. Added in 1.1.0. Thread-safe. */
ATTN_API attn_status attn_layer_norm(int64_t rows, int64_t features, const float *x,
                                     const float *weight, const float *bias, float eps,
                                     float *y);

/** Gradients of attn_layer_norm with the same x, weight and eps, given
 * d_y = ∂L/∂y [rows, features]: with x̂ = (x − mean)·rstd and g = d_y·weight,
 * d_x = rstd·(g − mean(g) − x̂·mean(g·x̂)) [rows, features],
 * d_weight = Σ_rows d_y·x̂ and d_bias = Σ_rows d_y [features]; each NULL (not
 * computed) or overwritten. d_x may be d_y (in place); no other output may
 * share a byte with an input or another output. Sums run over the rows in
 * order, in double: the same bits every call.
 * Returns ATTN_ERR_NULL_POINTER (a non-empty x or d_y, weight),
 * ATTN_ERR_INVALID_ARGUMENT (as attn_layer_norm; overlapping outputs),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY (3 floats per row of
 * statistics). On failure no output is written. Added in 1.1.0.
 * Thread-safe. */
ATTN_API attn_status attn_layer_norm_backward(int64_t rows, int64_t features, const float *x,
                                              const float *weight, float eps, const float *d_y,
                                              float *d_x, float *d_weight, float *d_bias);

/** @} */

#endif /* ATTN_ENCODER_H */
