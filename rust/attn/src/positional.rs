//! Position encodings: the sinusoidal table and rotary embeddings (RoPE).

use crate::{check, count, create, extent, opt_in, sys, Context, Layout, Result, RopeStyle};
use std::os::raw::c_int;
use std::ptr::{self, NonNull};

/// `attn_positional_encoding`: the `[len, dim]` sinusoidal encoding of
/// positions `start .. start + len` (Vaswani et al. §3.5):
/// P\[p, 2i\] = sin(pos / base^(2i/dim)), P\[p, 2i+1\] = cos(..). dim even
/// and >= 2; base finite and > 1. Thread-safe; no context.
pub fn positional_encoding(len: i64, dim: i64, start: i64, base: f32) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; count(&[len, dim]).unwrap_or(0)];
    let p = if out.is_empty() { ptr::null_mut() } else { out.as_mut_ptr() };
    // SAFETY: out holds len·dim floats when the sizes are valid; otherwise
    // libattn rejects them before writing.
    check(unsafe { sys::attn_positional_encoding(p, len, dim, start, base) })?;
    Ok(out)
}

/// A rotary position embedding (`attn_rope`; Su et al. 2021, RoFormer
/// eq. 34): the first rotary_dim features of each head form rotary_dim/2
/// pairs, and pair i of the row at position p is rotated by
/// θ = p·inv_freq\[i\], inv_freq\[i\] = base^(−2i/rotary_dim) unless a
/// scaling, the caller's frequencies or the caller's tables replace them
/// (the last one set wins). Features from rotary_dim on are left as they
/// are. Angles are formed in double.
///
/// Every setter copies what it is given. [`Rope::apply`] takes `&self`: a
/// rope may serve several threads at once (`Sync`), each with its own
/// [`Context`]. [`Mha::set_rope`](crate::Mha::set_rope) copies it.
#[derive(Debug)]
pub struct Rope {
    pub(crate) raw: NonNull<sys::attn_rope>,
    head_dim: i64,
    rotary_dim: i64,
}

// SAFETY: attn_rope.h: immutable during attn_rope_apply, may serve many
// threads; the setters take &mut self.
unsafe impl Send for Rope {}
unsafe impl Sync for Rope {}

impl Rope {
    /// `attn_rope_create`: heads of head_dim features, the first rotary_dim
    /// rotated (even, 2 <= rotary_dim <= head_dim), base > 1 (10000 in the
    /// paper and Llama 2, 500000 in Llama 3), the pairing `style`.
    pub fn new(head_dim: i64, rotary_dim: i64, base: f32, style: RopeStyle) -> Result<Rope> {
        // SAFETY: the out-pointer is valid.
        let raw =
            create(|p| unsafe { sys::attn_rope_create(p, head_dim, rotary_dim, base, style.0) })?;
        Ok(Rope { raw, head_dim, rotary_dim })
    }

    /// `attn_rope_set_linear_scaling` (position interpolation, HF "linear"):
    /// θ = (p / factor)·inv_freq. factor finite and > 0.
    pub fn set_linear_scaling(&mut self, factor: f32) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_rope_set_linear_scaling(self.raw.as_ptr(), factor) })?;
        Ok(self)
    }

    /// `attn_rope_set_llama3_scaling` (HF "llama3"; Llama 3.1 uses
    /// factor 8, low_freq_factor 1, high_freq_factor 4, 8192 positions).
    pub fn set_llama3_scaling(
        &mut self,
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_positions: i64,
    ) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe {
            sys::attn_rope_set_llama3_scaling(
                self.raw.as_ptr(),
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            )
        })?;
        Ok(self)
    }

    /// `attn_rope_set_inv_freq`: the caller's frequencies `[rotary_dim/2]`,
    /// copied (YaRN, NTK, ...).
    pub fn set_inv_freq(&mut self, inv_freq: &[f32]) -> Result<&mut Self> {
        extent("Rope::set_inv_freq", "inv_freq", inv_freq.len(), &[self.rotary_dim / 2])?;
        // SAFETY: rotary_dim/2 floats, copied.
        check(unsafe { sys::attn_rope_set_inv_freq(self.raw.as_ptr(), inv_freq.as_ptr()) })?;
        Ok(self)
    }

    /// `attn_rope_set_tables`: the caller's cos and sin `[n_positions,
    /// rotary_dim/2]`, copied (ONNX's cos_cache and sin_cache); positions
    /// must then be in `[0, n_positions)`.
    pub fn set_tables(&mut self, cos: &[f32], sin: &[f32], n_positions: i64) -> Result<&mut Self> {
        const F: &str = "Rope::set_tables";
        extent(F, "cos", cos.len(), &[n_positions, self.rotary_dim / 2])?;
        extent(F, "sin", sin.len(), &[n_positions, self.rotary_dim / 2])?;
        // SAFETY: lengths checked above; both copied.
        check(unsafe {
            sys::attn_rope_set_tables(self.raw.as_ptr(), cos.as_ptr(), sin.as_ptr(), n_positions)
        })?;
        Ok(self)
    }

    /// `attn_rope_apply`: rotates x in place, x `[batch, heads, seq,
    /// head_dim]` ([`Layout::BHSD`]) or `[batch, seq, heads, head_dim]`
    /// ([`Layout::BSHD`], a projection's `[B, S, H·D]`). `positions`
    /// `[batch, seq]`, or `None` for start, start + 1, ... in every batch
    /// row. `inverse` rotates by −θ: the backward (d_x = apply(d_y,
    /// inverse)) and the undoing of a rotation.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        ctx: &mut Context,
        layout: Layout,
        batch: i64,
        heads: i64,
        seq: i64,
        x: &mut [f32],
        positions: Option<&[i64]>,
        start: i64,
        inverse: bool,
    ) -> Result<()> {
        const F: &str = "Rope::apply";
        extent(F, "x", x.len(), &[batch, heads, seq, self.head_dim])?;
        let pos = opt_in(F, "positions", positions, &[batch, seq])?;
        // SAFETY: lengths checked above; x is the only output.
        check(unsafe {
            sys::attn_rope_apply(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                layout.0,
                batch,
                heads,
                seq,
                x.as_mut_ptr(),
                pos,
                start,
                inverse as c_int,
            )
        })
    }

    /// head_dim, as created.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
    }

    /// rotary_dim, as created.
    pub fn rotary_dim(&self) -> i64 {
        self.rotary_dim
    }
}

impl Drop for Rope {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_rope_destroy(self.raw.as_ptr()) }
    }
}
