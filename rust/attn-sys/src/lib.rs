//! Raw FFI declarations of libattn, the C attention library: every function
//! that `libattn.so.1` exports (the 1.0 and 1.1 calls of `attn.h` and the
//! parts it includes: `attn_training.h`, `attn_encoder.h`,
//! `attn_modifiers.h`, `attn_rope.h`, `attn_decoding.h`), declared by hand
//! (no bindgen: nothing is downloaded). Names, types and values are the
//! header's; the contract of each call (shapes, ranges, statuses, ownership,
//! thread-safety) is its comment in the header, which these one-line docs
//! only summarise. The safe wrapper is the `attn` crate.
//!
//! C enums are plain `c_int` type aliases with one constant per value, never
//! Rust enums: a Rust enum holding a value it does not list (a status
//! appended by a newer libattn, say) would be undefined behaviour, while a
//! `c_int` holds any value. Handles are opaque `#[repr(C)]` structs that Rust
//! can only point to: neither `Send`, `Sync` nor `Unpin`. Every function is
//! `unsafe` to call.
//!
//! Linking: `build.rs` runs `pkg-config --libs attn` (set `PKG_CONFIG_PATH`
//! for a library installed outside the system folders) and passes the
//! library's folders to dependent build scripts as `DEP_ATTN_LIBDIR`.
//!
//! Calls added in 1.1.0 need `attn_version_number() >= 10100` at run time
//! when a program may meet an older `libattn.so.1`.

#![allow(non_camel_case_types)]
#![warn(missing_docs)]

use std::marker::{PhantomData, PhantomPinned};
use std::os::raw::{c_char, c_int, c_uint};

/// `attn_status`: the result of every call that can fail.
pub type attn_status = c_int;
/// Success.
pub const ATTN_OK: attn_status = 0;
/// A required pointer is NULL.
pub const ATTN_ERR_NULL_POINTER: attn_status = 1;
/// A value outside its domain: negative size, unknown enum, non-finite scale.
pub const ATTN_ERR_INVALID_ARGUMENT: attn_status = 2;
/// Sizes valid alone but inconsistent together.
pub const ATTN_ERR_SHAPE_MISMATCH: attn_status = 3;
/// A buffer's byte count does not fit in size_t.
pub const ATTN_ERR_SIZE_OVERFLOW: attn_status = 4;
/// An allocation or a thread creation failed.
pub const ATTN_ERR_OUT_OF_MEMORY: attn_status = 5;
/// A valid request this build does not implement.
pub const ATTN_ERR_UNSUPPORTED: attn_status = 6;
/// Object not fully configured (e.g. weights not set).
pub const ATTN_ERR_STATE: attn_status = 7;
/// A message passing call failed (libattn-mpi's MPI; added in 1.1.0).
pub const ATTN_ERR_COMMUNICATION: attn_status = 8;

/// `attn_layout`: memory layout of q, k, v and out.
pub type attn_layout = c_int;
/// `[batch, heads, seq, dim]` (the default).
pub const ATTN_LAYOUT_BHSD: attn_layout = 0;
/// `[batch, seq, heads, dim]`.
pub const ATTN_LAYOUT_BSHD: attn_layout = 1;

/// `attn_causal`: which keys a query may see by position.
pub type attn_causal = c_int;
/// No positional restriction (the default).
pub const ATTN_CAUSAL_NONE: attn_causal = 0;
/// Query i sees keys j <= i.
pub const ATTN_CAUSAL_TOP_LEFT: attn_causal = 1;
/// Query i sees keys j <= i + len_kv - len_q.
pub const ATTN_CAUSAL_BOTTOM_RIGHT: attn_causal = 2;

/// `attn_proj`: which projection `attn_mha_set_weights` sets.
pub type attn_proj = c_int;
/// The query projection.
pub const ATTN_PROJ_Q: attn_proj = 0;
/// The key projection.
pub const ATTN_PROJ_K: attn_proj = 1;
/// The value projection.
pub const ATTN_PROJ_V: attn_proj = 2;
/// The output projection.
pub const ATTN_PROJ_O: attn_proj = 3;

/// `attn_mha_property`: what `attn_mha_get_property` reads (1.1).
pub type attn_mha_property = c_int;
/// embed_dim, as created.
pub const ATTN_MHA_EMBED_DIM: attn_mha_property = 0;
/// num_heads.
pub const ATTN_MHA_NUM_HEADS: attn_mha_property = 1;
/// num_kv_heads.
pub const ATTN_MHA_NUM_KV_HEADS: attn_mha_property = 2;
/// embed_dim / num_heads.
pub const ATTN_MHA_HEAD_DIM: attn_mha_property = 3;
/// kdim: the features of a key row.
pub const ATTN_MHA_KDIM: attn_mha_property = 4;
/// vdim: the features of a value row.
pub const ATTN_MHA_VDIM: attn_mha_property = 5;
/// 1 if the projections have biases, else 0.
pub const ATTN_MHA_BIAS: attn_mha_property = 6;
/// The attn_causal value set.
pub const ATTN_MHA_CAUSAL: attn_mha_property = 7;
/// 1 if a window, softcap or ALiBi is set.
pub const ATTN_MHA_HAS_MODIFIERS: attn_mha_property = 8;
/// 1 if attn_mha_set_rope gave the layer a rope.
pub const ATTN_MHA_HAS_ROPE: attn_mha_property = 9;
/// 1 if attn_mha_set_dropout set p > 0.
pub const ATTN_MHA_HAS_DROPOUT: attn_mha_property = 10;

/// `attn_activation`: the encoder layer's feed-forward activation (1.1).
pub type attn_activation = c_int;
/// max(x, 0), PyTorch's "relu".
pub const ATTN_ACTIVATION_RELU: attn_activation = 0;
/// x·Φ(x) with the exact erf, PyTorch's "gelu".
pub const ATTN_ACTIVATION_GELU: attn_activation = 1;

/// `attn_rope_style`: the pairing of RoPE's rotated features (1.1).
pub type attn_rope_style = c_int;
/// Pairs (x\[i\], x\[i + rotary_dim/2\]) (GPT-NeoX, Llama).
pub const ATTN_ROPE_HALF: attn_rope_style = 0;
/// Pairs (x\[2i\], x\[2i + 1\]) (GPT-J).
pub const ATTN_ROPE_INTERLEAVED: attn_rope_style = 1;

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
            // Neither Send, Sync nor Unpin: only libattn knows what is inside.
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// `attn_context`: worker threads and scratch memory.
    attn_context;
    /// `attn_mask`: references to the caller's mask arrays.
    attn_mask;
    /// `attn_sdpa`: a scaled dot-product attention operation.
    attn_sdpa;
    /// `attn_mha`: a multi-head attention layer.
    attn_mha;
    /// `attn_additive`: an additive (Bahdanau) attention op.
    attn_additive;
    /// `attn_activations`: what a training forward keeps for its backward (1.1).
    attn_activations;
    /// `attn_encoder_layer`: a Transformer encoder layer (1.1).
    attn_encoder_layer;
    /// `attn_rope`: a rotary position embedding (1.1).
    attn_rope;
    /// `attn_kv_cache`: paged key/value storage for many sequences (1.1).
    attn_kv_cache;
}

// ---- attn.h: basics, masks, SDPA, MHA, additive, Nadaraya–Watson ----------
extern "C" {
    /// MAJOR·10000 + MINOR·100 + PATCH of the runtime library.
    pub fn attn_version_number() -> c_uint;
    /// "MAJOR.MINOR.PATCH": static, never NULL.
    pub fn attn_version_string() -> *const c_char;
    /// A static name of `status`, never NULL.
    pub fn attn_status_string(status: attn_status) -> *const c_char;
    /// The calling thread's last failure text, never NULL.
    pub fn attn_last_error() -> *const c_char;
    /// Sets this thread's attn_last_error() to "func: message"; returns status (1.1).
    pub fn attn_set_error(
        status: attn_status,
        func: *const c_char,
        message: *const c_char,
    ) -> attn_status;

    /// Creates a context (threads and scratch made lazily).
    pub fn attn_context_create(ctx: *mut *mut attn_context) -> attn_status;
    /// Frees a context; NULL is a no-op.
    pub fn attn_context_destroy(ctx: *mut attn_context);
    /// Threads of forward calls on this context: 0 = libattn's choice.
    pub fn attn_context_set_num_threads(ctx: *mut attn_context, n: c_int) -> attn_status;

    /// Creates an empty mask.
    pub fn attn_mask_create(mask: *mut *mut attn_mask) -> attn_status;
    /// Frees a mask (not the arrays it references); NULL is a no-op.
    pub fn attn_mask_destroy(mask: *mut attn_mask);
    /// Removes every kind from the mask.
    pub fn attn_mask_clear(mask: *mut attn_mask) -> attn_status;
    /// Valid lengths `[batch]` or `[batch, len_q]` (referenced, not copied).
    pub fn attn_mask_set_kv_lengths(
        mask: *mut attn_mask,
        lengths: *const i64,
        batch: i64,
        len_q: i64,
        per_query: c_int,
    ) -> attn_status;
    /// Boolean keep-mask `[mb, mh, mq, len_kv]` (referenced, not copied).
    pub fn attn_mask_set_bool(
        mask: *mut attn_mask,
        keep: *const u8,
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> attn_status;
    /// Additive bias `[mb, mh, mq, len_kv]` (referenced, not copied).
    pub fn attn_mask_set_bias(
        mask: *mut attn_mask,
        bias: *const f32,
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> attn_status;

    /// Creates an SDPA op for q `[batch, heads_q, len_q, dim_qk]` etc.
    pub fn attn_sdpa_create(
        op: *mut *mut attn_sdpa,
        batch: i64,
        heads_q: i64,
        heads_kv: i64,
        len_q: i64,
        len_kv: i64,
        dim_qk: i64,
        dim_v: i64,
    ) -> attn_status;
    /// Frees an SDPA op; NULL is a no-op.
    pub fn attn_sdpa_destroy(op: *mut attn_sdpa);
    /// Layout of q, k, v and out.
    pub fn attn_sdpa_set_layout(op: *mut attn_sdpa, layout: attn_layout) -> attn_status;
    /// Factor applied to q·k (default 1/sqrt(dim_qk)).
    pub fn attn_sdpa_set_scale(op: *mut attn_sdpa, scale: f32) -> attn_status;
    /// Causal alignment.
    pub fn attn_sdpa_set_causal(op: *mut attn_sdpa, causal: attn_causal) -> attn_status;
    /// out = softmax(scale·q·kᵀ + bias, masked)·v; weights and lse optional.
    pub fn attn_sdpa_forward(
        ctx: *mut attn_context,
        op: *const attn_sdpa,
        q: *const f32,
        k: *const f32,
        v: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        weights: *mut f32,
        lse: *mut f32,
    ) -> attn_status;

    /// Creates a multi-head layer with no weights set.
    pub fn attn_mha_create(
        mha: *mut *mut attn_mha,
        embed_dim: i64,
        num_heads: i64,
        num_kv_heads: i64,
        kdim: i64,
        vdim: i64,
        bias: c_int,
    ) -> attn_status;
    /// Frees a layer; NULL is a no-op.
    pub fn attn_mha_destroy(mha: *mut attn_mha);
    /// Copies one projection's weight `[out, in]` and bias `[out]`.
    pub fn attn_mha_set_weights(
        mha: *mut attn_mha,
        which: attn_proj,
        weight: *const f32,
        bias: *const f32,
    ) -> attn_status;
    /// Causal alignment of the layer's attention.
    pub fn attn_mha_set_causal(mha: *mut attn_mha, causal: attn_causal) -> attn_status;
    /// Reads one of the layer's sizes or settings (1.1).
    pub fn attn_mha_get_property(
        mha: *const attn_mha,
        what: attn_mha_property,
        value: *mut i64,
    ) -> attn_status;
    /// Runs the layer: out `[batch, len_q, embed_dim]`.
    pub fn attn_mha_forward(
        ctx: *mut attn_context,
        mha: *const attn_mha,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        query: *const f32,
        key: *const f32,
        value: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        weights: *mut f32,
    ) -> attn_status;

    /// Creates an additive attention op with no weights set.
    pub fn attn_additive_create(
        op: *mut *mut attn_additive,
        query_dim: i64,
        key_dim: i64,
        hidden: i64,
    ) -> attn_status;
    /// Frees an additive op; NULL is a no-op.
    pub fn attn_additive_destroy(op: *mut attn_additive);
    /// Copies w_q `[hidden, query_dim]`, w_k `[hidden, key_dim]`, w_v `[hidden]`.
    pub fn attn_additive_set_weights(
        op: *mut attn_additive,
        w_q: *const f32,
        w_k: *const f32,
        w_v: *const f32,
    ) -> attn_status;
    /// Additive attention: out `[batch, len_q, dim_v]`.
    pub fn attn_additive_forward(
        ctx: *mut attn_context,
        op: *const attn_additive,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        dim_v: i64,
        queries: *const f32,
        keys: *const f32,
        values: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        weights: *mut f32,
    ) -> attn_status;

    /// Nadaraya–Watson kernel regression with width w.
    pub fn attn_nadaraya_watson(
        ctx: *mut attn_context,
        n_queries: i64,
        n_keys: i64,
        queries: *const f32,
        keys: *const f32,
        values: *const f32,
        w: f32,
        out: *mut f32,
        weights: *mut f32,
    ) -> attn_status;

    /// The sinusoidal positional encoding `[len, dim]`.
    pub fn attn_positional_encoding(
        out: *mut f32,
        len: i64,
        dim: i64,
        start: i64,
        base: f32,
    ) -> attn_status;

    /// snprintf-style "key: value" lines about this process's setup (1.1).
    pub fn attn_runtime_info(buf: *mut c_char, size: usize) -> usize;
}

// ---- attn_training.h (1.1) -------------------------------------------------
extern "C" {
    /// Dropout on the op's attention weights, keep decisions from seed.
    pub fn attn_sdpa_set_dropout(op: *mut attn_sdpa, p: f32, seed: u64) -> attn_status;
    /// Writes the dropout keep mask `[B, Hq, Lq, Lkv]` of the op.
    pub fn attn_dropout_keep_mask(op: *const attn_sdpa, keep: *mut u8) -> attn_status;
    /// Gradients of attn_sdpa_forward (FlashAttention-2 backward).
    pub fn attn_sdpa_backward(
        ctx: *mut attn_context,
        op: *const attn_sdpa,
        q: *const f32,
        k: *const f32,
        v: *const f32,
        mask: *const attn_mask,
        out: *const f32,
        lse: *const f32,
        d_out: *const f32,
        d_q: *mut f32,
        d_k: *mut f32,
        d_v: *mut f32,
    ) -> attn_status;
    /// Creates an empty activations buffer.
    pub fn attn_activations_create(act: *mut *mut attn_activations) -> attn_status;
    /// Frees an activations buffer; NULL is a no-op.
    pub fn attn_activations_destroy(act: *mut attn_activations);
    /// Floats of the layer's flat parameter vector.
    pub fn attn_mha_param_count(mha: *const attn_mha, count: *mut i64) -> attn_status;
    /// Copies the layer's parameters into params `[count]`.
    pub fn attn_mha_get_params(mha: *const attn_mha, params: *mut f32) -> attn_status;
    /// Copies params `[count]` into the layer.
    pub fn attn_mha_set_params(mha: *mut attn_mha, params: *const f32) -> attn_status;
    /// Dropout of the layer's training forward.
    pub fn attn_mha_set_dropout(mha: *mut attn_mha, p: f32, seed: u64) -> attn_status;
    /// attn_mha_forward that fills act (which keeps a pointer to mask).
    pub fn attn_mha_forward_train(
        ctx: *mut attn_context,
        mha: *const attn_mha,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        query: *const f32,
        key: *const f32,
        value: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        weights: *mut f32,
        act: *mut attn_activations,
    ) -> attn_status;
    /// Gradients of the last attn_mha_forward_train that filled act.
    pub fn attn_mha_backward(
        ctx: *mut attn_context,
        mha: *const attn_mha,
        act: *const attn_activations,
        d_out: *const f32,
        d_query: *mut f32,
        d_key: *mut f32,
        d_value: *mut f32,
        d_params: *mut f32,
    ) -> attn_status;
    /// Floats of the additive op's flat parameter vector.
    pub fn attn_additive_param_count(op: *const attn_additive, count: *mut i64) -> attn_status;
    /// Copies the additive op's parameters into params `[count]`.
    pub fn attn_additive_get_params(op: *const attn_additive, params: *mut f32) -> attn_status;
    /// Copies params `[count]` into the additive op.
    pub fn attn_additive_set_params(op: *mut attn_additive, params: *const f32) -> attn_status;
    /// attn_additive_forward that fills act (which keeps a pointer to mask).
    pub fn attn_additive_forward_train(
        ctx: *mut attn_context,
        op: *const attn_additive,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        dim_v: i64,
        queries: *const f32,
        keys: *const f32,
        values: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        weights: *mut f32,
        act: *mut attn_activations,
    ) -> attn_status;
    /// Gradients of the last attn_additive_forward_train that filled act.
    pub fn attn_additive_backward(
        ctx: *mut attn_context,
        op: *const attn_additive,
        act: *const attn_activations,
        d_out: *const f32,
        d_queries: *mut f32,
        d_keys: *mut f32,
        d_values: *mut f32,
        d_params: *mut f32,
    ) -> attn_status;
    /// Gradients of attn_nadaraya_watson, d_w included.
    pub fn attn_nadaraya_watson_backward(
        ctx: *mut attn_context,
        n_queries: i64,
        n_keys: i64,
        queries: *const f32,
        keys: *const f32,
        values: *const f32,
        w: f32,
        d_out: *const f32,
        d_queries: *mut f32,
        d_keys: *mut f32,
        d_values: *mut f32,
        d_w: *mut f32,
    ) -> attn_status;
}

// ---- attn_encoder.h (1.1) --------------------------------------------------
extern "C" {
    /// Creates an encoder layer with its parameters unset.
    pub fn attn_encoder_layer_create(
        layer: *mut *mut attn_encoder_layer,
        d_model: i64,
        nhead: i64,
        dim_feedforward: i64,
        activation: attn_activation,
        norm_first: c_int,
        layer_norm_eps: f32,
    ) -> attn_status;
    /// Frees an encoder layer; NULL is a no-op.
    pub fn attn_encoder_layer_destroy(layer: *mut attn_encoder_layer);
    /// Causal mask of the layer's self-attention.
    pub fn attn_encoder_layer_set_causal(
        layer: *mut attn_encoder_layer,
        causal: attn_causal,
    ) -> attn_status;
    /// Dropout of the training forward.
    pub fn attn_encoder_layer_set_dropout(
        layer: *mut attn_encoder_layer,
        p: f32,
        seed: u64,
    ) -> attn_status;
    /// Floats of the layer's flat parameter vector.
    pub fn attn_encoder_layer_param_count(
        layer: *const attn_encoder_layer,
        count: *mut i64,
    ) -> attn_status;
    /// Copies the layer's parameters into params `[count]`.
    pub fn attn_encoder_layer_get_params(
        layer: *const attn_encoder_layer,
        params: *mut f32,
    ) -> attn_status;
    /// Copies params `[count]` into the layer.
    pub fn attn_encoder_layer_set_params(
        layer: *mut attn_encoder_layer,
        params: *const f32,
    ) -> attn_status;
    /// out `[batch, len, d_model]`; act NULL (inference) or filled (training).
    pub fn attn_encoder_layer_forward(
        ctx: *mut attn_context,
        layer: *const attn_encoder_layer,
        batch: i64,
        len: i64,
        src: *const f32,
        mask: *const attn_mask,
        out: *mut f32,
        act: *mut attn_activations,
    ) -> attn_status;
    /// Gradients of the last training attn_encoder_layer_forward.
    pub fn attn_encoder_layer_backward(
        ctx: *mut attn_context,
        layer: *const attn_encoder_layer,
        act: *const attn_activations,
        d_out: *const f32,
        d_src: *mut f32,
        d_params: *mut f32,
    ) -> attn_status;
    /// Layer normalisation of `rows` rows of `features`.
    pub fn attn_layer_norm(
        rows: i64,
        features: i64,
        x: *const f32,
        weight: *const f32,
        bias: *const f32,
        eps: f32,
        y: *mut f32,
    ) -> attn_status;
    /// Gradients of attn_layer_norm.
    pub fn attn_layer_norm_backward(
        rows: i64,
        features: i64,
        x: *const f32,
        weight: *const f32,
        eps: f32,
        d_y: *const f32,
        d_x: *mut f32,
        d_weight: *mut f32,
        d_bias: *mut f32,
    ) -> attn_status;
}

// ---- attn_modifiers.h (1.1) ------------------------------------------------
extern "C" {
    /// Sliding window (left, right); -1 leaves a side unbounded.
    pub fn attn_sdpa_set_window(op: *mut attn_sdpa, left: i64, right: i64) -> attn_status;
    /// Logit softcap; 0 is off.
    pub fn attn_sdpa_set_softcap(op: *mut attn_sdpa, cap: f32) -> attn_status;
    /// ALiBi with slopes `[heads_q]` (copied), or NULL for Press et al.'s.
    pub fn attn_sdpa_set_alibi(op: *mut attn_sdpa, slopes: *const f32) -> attn_status;
    /// Turns ALiBi off.
    pub fn attn_sdpa_clear_alibi(op: *mut attn_sdpa) -> attn_status;
    /// attn_sdpa_set_window for the layer's attention.
    pub fn attn_mha_set_window(mha: *mut attn_mha, left: i64, right: i64) -> attn_status;
    /// attn_sdpa_set_softcap for the layer's attention.
    pub fn attn_mha_set_softcap(mha: *mut attn_mha, cap: f32) -> attn_status;
    /// attn_sdpa_set_alibi for the layer: slopes `[num_heads]` (copied) or NULL.
    pub fn attn_mha_set_alibi(mha: *mut attn_mha, slopes: *const f32) -> attn_status;
    /// Turns the layer's ALiBi off.
    pub fn attn_mha_clear_alibi(mha: *mut attn_mha) -> attn_status;
}

// ---- attn_rope.h (1.1) -----------------------------------------------------
extern "C" {
    /// Creates a rotary embedding rotating the first rotary_dim of head_dim.
    pub fn attn_rope_create(
        rope: *mut *mut attn_rope,
        head_dim: i64,
        rotary_dim: i64,
        base: f32,
        style: attn_rope_style,
    ) -> attn_status;
    /// Frees a rope; NULL is a no-op.
    pub fn attn_rope_destroy(rope: *mut attn_rope);
    /// Linear position interpolation: base's frequencies divided by factor.
    pub fn attn_rope_set_linear_scaling(rope: *mut attn_rope, factor: f32) -> attn_status;
    /// Llama 3.1's frequency scaling.
    pub fn attn_rope_set_llama3_scaling(
        rope: *mut attn_rope,
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_positions: i64,
    ) -> attn_status;
    /// The caller's frequencies `[rotary_dim/2]` (copied).
    pub fn attn_rope_set_inv_freq(rope: *mut attn_rope, inv_freq: *const f32) -> attn_status;
    /// The caller's cos and sin tables `[n_positions, rotary_dim/2]` (copied).
    pub fn attn_rope_set_tables(
        rope: *mut attn_rope,
        cos: *const f32,
        sin: *const f32,
        n_positions: i64,
    ) -> attn_status;
    /// Rotates x in place (inverse = 1: by −θ).
    pub fn attn_rope_apply(
        ctx: *mut attn_context,
        rope: *const attn_rope,
        layout: attn_layout,
        batch: i64,
        heads: i64,
        seq: i64,
        x: *mut f32,
        positions: *const i64,
        start: i64,
        inverse: c_int,
    ) -> attn_status;
    /// Gives the layer a copy of rope (NULL removes it).
    pub fn attn_mha_set_rope(mha: *mut attn_mha, rope: *const attn_rope) -> attn_status;
}

// ---- attn_decoding.h (1.1) -------------------------------------------------
extern "C" {
    /// Creates a cache of num_pages pages of page_size tokens.
    pub fn attn_kv_cache_create(
        cache: *mut *mut attn_kv_cache,
        heads_kv: i64,
        dim_qk: i64,
        dim_v: i64,
        page_size: i64,
        num_pages: i64,
    ) -> attn_status;
    /// Frees a cache and every sequence in it; NULL is a no-op.
    pub fn attn_kv_cache_destroy(cache: *mut attn_kv_cache);
    /// Opens an empty sequence.
    pub fn attn_kv_cache_seq_open(cache: *mut attn_kv_cache, seq: *mut i64) -> attn_status;
    /// Closes a sequence.
    pub fn attn_kv_cache_seq_close(cache: *mut attn_kv_cache, seq: i64) -> attn_status;
    /// Opens a sequence sharing src's tokens (copy-on-write).
    pub fn attn_kv_cache_seq_fork(
        cache: *mut attn_kv_cache,
        src: i64,
        dst: *mut i64,
    ) -> attn_status;
    /// Keeps the first len tokens of seq.
    pub fn attn_kv_cache_seq_truncate(cache: *mut attn_kv_cache, seq: i64, len: i64)
        -> attn_status;
    /// The number of tokens of seq.
    pub fn attn_kv_cache_seq_len(
        cache: *const attn_kv_cache,
        seq: i64,
        len: *mut i64,
    ) -> attn_status;
    /// Appends n tokens: k `[n, heads_kv, dim_qk]`, v `[n, heads_kv, dim_v]` (copied).
    pub fn attn_kv_cache_append(
        cache: *mut attn_kv_cache,
        seq: i64,
        n: i64,
        k: *const f32,
        v: *const f32,
    ) -> attn_status;
    /// Copies tokens [start, start + n) of seq out of the cache.
    pub fn attn_kv_cache_read(
        cache: *const attn_kv_cache,
        seq: i64,
        start: i64,
        n: i64,
        k: *mut f32,
        v: *mut f32,
    ) -> attn_status;
    /// Attention of new queries against their sequences' cached keys and values.
    pub fn attn_sdpa_forward_cached(
        ctx: *mut attn_context,
        op: *const attn_sdpa,
        cache: *const attn_kv_cache,
        n_seqs: i64,
        seqs: *const i64,
        cu_q: *const i64,
        q: *const f32,
        out: *mut f32,
        lse: *mut f32,
    ) -> attn_status;
    /// The multi-head layer's step with a cache (appends the new K and V).
    pub fn attn_mha_forward_cached(
        ctx: *mut attn_context,
        mha: *const attn_mha,
        cache: *mut attn_kv_cache,
        n_seqs: i64,
        seqs: *const i64,
        cu_q: *const i64,
        query: *const f32,
        out: *mut f32,
    ) -> attn_status;
    /// The encoder layer's step with a cache (a causal decoder layer).
    pub fn attn_encoder_layer_forward_cached(
        ctx: *mut attn_context,
        layer: *const attn_encoder_layer,
        cache: *mut attn_kv_cache,
        n_seqs: i64,
        seqs: *const i64,
        cu_q: *const i64,
        src: *const f32,
        out: *mut f32,
    ) -> attn_status;
    /// Exact attention over the union of n_parts key sets from outs and lses.
    pub fn attn_merge_partials(
        n_parts: i64,
        rows: i64,
        dim_v: i64,
        outs: *const *const f32,
        lses: *const *const f32,
        out: *mut f32,
        lse: *mut f32,
    ) -> attn_status;
}
