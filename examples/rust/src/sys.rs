//! The C ABI of `attn.h`, declared by hand (no bindgen: nothing is
//! downloaded). Names, types and values are those of the header.
//!
//! C enums are plain `c_int` type aliases with one constant per value,
//! never Rust enums: a Rust enum holding a value it does not list (a status
//! appended by a newer libattn, say) would be undefined behaviour, while a
//! `c_int` holds any value. Handles are opaque structs that Rust can only
//! point to. Every function here is `unsafe`; `crate` (lib.rs) wraps them.

#![allow(non_camel_case_types)]

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
/// A message passing call failed (libattn-mpi's MPI).
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
}

extern "C" {
    pub fn attn_version_number() -> c_uint;
    pub fn attn_version_string() -> *const c_char;
    pub fn attn_status_string(status: attn_status) -> *const c_char;
    pub fn attn_last_error() -> *const c_char;

    pub fn attn_context_create(ctx: *mut *mut attn_context) -> attn_status;
    pub fn attn_context_destroy(ctx: *mut attn_context);
    pub fn attn_context_set_num_threads(ctx: *mut attn_context, n: c_int) -> attn_status;

    pub fn attn_mask_create(mask: *mut *mut attn_mask) -> attn_status;
    pub fn attn_mask_destroy(mask: *mut attn_mask);
    pub fn attn_mask_clear(mask: *mut attn_mask) -> attn_status;
    pub fn attn_mask_set_kv_lengths(
        mask: *mut attn_mask,
        lengths: *const i64,
        batch: i64,
        len_q: i64,
        per_query: c_int,
    ) -> attn_status;
    pub fn attn_mask_set_bool(
        mask: *mut attn_mask,
        keep: *const u8,
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> attn_status;
    pub fn attn_mask_set_bias(
        mask: *mut attn_mask,
        bias: *const f32,
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> attn_status;

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
    pub fn attn_sdpa_destroy(op: *mut attn_sdpa);
    pub fn attn_sdpa_set_layout(op: *mut attn_sdpa, layout: attn_layout) -> attn_status;
    pub fn attn_sdpa_set_scale(op: *mut attn_sdpa, scale: f32) -> attn_status;
    pub fn attn_sdpa_set_causal(op: *mut attn_sdpa, causal: attn_causal) -> attn_status;
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

    pub fn attn_mha_create(
        mha: *mut *mut attn_mha,
        embed_dim: i64,
        num_heads: i64,
        num_kv_heads: i64,
        kdim: i64,
        vdim: i64,
        bias: c_int,
    ) -> attn_status;
    pub fn attn_mha_destroy(mha: *mut attn_mha);
    pub fn attn_mha_set_weights(
        mha: *mut attn_mha,
        which: attn_proj,
        weight: *const f32,
        bias: *const f32,
    ) -> attn_status;
    pub fn attn_mha_set_causal(mha: *mut attn_mha, causal: attn_causal) -> attn_status;
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

    pub fn attn_additive_create(
        op: *mut *mut attn_additive,
        query_dim: i64,
        key_dim: i64,
        hidden: i64,
    ) -> attn_status;
    pub fn attn_additive_destroy(op: *mut attn_additive);
    pub fn attn_additive_set_weights(
        op: *mut attn_additive,
        w_q: *const f32,
        w_k: *const f32,
        w_v: *const f32,
    ) -> attn_status;
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

    pub fn attn_positional_encoding(
        out: *mut f32,
        len: i64,
        dim: i64,
        start: i64,
        base: f32,
    ) -> attn_status;
}
