//! Scaled dot-product attention: forward, backward, dropout, score
//! modifiers and the cached forward of decoding.

use crate::context::mask_ptr;
use crate::{
    check, count, create, extent, len64, opt_in, opt_out, sys, Causal, Context, Error, KvCache,
    Layout, Mask, Result, Status,
};
use std::ptr::NonNull;

/// Scaled dot-product attention for fixed shapes (`attn_sdpa`):
/// `out = softmax(scale·q·kᵀ + bias, masked)·v` per batch row and query
/// head h, which reads key/value head h / (heads_q / heads_kv)
/// (grouped-query attention; multi-query with heads_kv = 1).
///
/// Shapes (BHSD, the default layout; [`Layout::BSHD`] swaps heads and seq
/// of q, k, v, out and their gradients, never of weights and lse):
/// q `[batch, heads_q, len_q, dim_qk]`, k `[batch, heads_kv, len_kv, dim_qk]`,
/// v `[batch, heads_kv, len_kv, dim_v]`, out `[batch, heads_q, len_q, dim_v]`,
/// weights `[batch, heads_q, len_q, len_kv]`, lse `[batch, heads_q, len_q]`.
///
/// Calls take `&self`: one op may serve several threads at once (`Sync`),
/// each with its own [`Context`]; setters take `&mut self`.
#[derive(Debug)]
pub struct Sdpa {
    raw: NonNull<sys::attn_sdpa>,
    batch: i64,
    heads_q: i64,
    heads_kv: i64,
    len_q: i64,
    len_kv: i64,
    dim_qk: i64,
    dim_v: i64,
}

// SAFETY: attn.h: ops are immutable during calls and may be shared by
// threads; the setters take &mut self.
unsafe impl Send for Sdpa {}
unsafe impl Sync for Sdpa {}

impl Sdpa {
    /// `attn_sdpa_create`: layout BHSD, scale 1/sqrt(dim_qk), no causal
    /// restriction, no dropout, no modifiers. batch, len_q, len_kv >= 0;
    /// heads_q, heads_kv, dim_qk, dim_v >= 1; heads_q a multiple of heads_kv.
    pub fn new(
        batch: i64,
        heads_q: i64,
        heads_kv: i64,
        len_q: i64,
        len_kv: i64,
        dim_qk: i64,
        dim_v: i64,
    ) -> Result<Sdpa> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe {
            sys::attn_sdpa_create(p, batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v)
        })?;
        Ok(Sdpa { raw, batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v })
    }

    /// `attn_sdpa_set_layout`.
    pub fn set_layout(&mut self, layout: Layout) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_layout(self.raw.as_ptr(), layout.0) })?;
        Ok(self)
    }

    /// `attn_sdpa_set_scale`: any finite factor.
    pub fn set_scale(&mut self, scale: f32) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_scale(self.raw.as_ptr(), scale) })?;
        Ok(self)
    }

    /// `attn_sdpa_set_causal`.
    pub fn set_causal(&mut self, causal: Causal) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_causal(self.raw.as_ptr(), causal.0) })?;
        Ok(self)
    }

    /// `attn_sdpa_set_dropout`: every later forward and backward keeps each
    /// weight with probability 1 − p, scaled by 1/(1 − p); p in [0, 1), 0
    /// (the default) for inference. The keep decision is a pure function of
    /// (seed, b, h, i, j) (Philox 4x32-10), so forward and backward agree;
    /// pass a new seed per step.
    pub fn set_dropout(&mut self, p: f32, seed: u64) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_dropout(self.raw.as_ptr(), p, seed) })?;
        Ok(self)
    }

    /// `attn_dropout_keep_mask`: keep `[batch, heads_q, len_q, len_kv]`, 1
    /// where the dropout keeps a weight, 0 where it drops it (all 1 with
    /// p = 0). Dropout only, not the attention masks.
    pub fn dropout_keep_mask(&self, keep: &mut [u8]) -> Result<()> {
        extent("Sdpa::dropout_keep_mask", "keep", keep.len(), &self.weights_shape())?;
        // SAFETY: keep has the length of the mask.
        check(unsafe { sys::attn_dropout_keep_mask(self.raw.as_ptr(), keep.as_mut_ptr()) })
    }

    /// `attn_sdpa_set_window`: key j is visible to the query at aligned
    /// position p only if p − left <= j <= p + right; −1 leaves a side
    /// unbounded; (−1, −1), the default, is no window.
    pub fn set_window(&mut self, left: i64, right: i64) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_window(self.raw.as_ptr(), left, right) })?;
        Ok(self)
    }

    /// `attn_sdpa_set_softcap`: s = cap·tanh(s / cap) after the scale; 0
    /// (the default) is off.
    pub fn set_softcap(&mut self, cap: f32) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_set_softcap(self.raw.as_ptr(), cap) })?;
        Ok(self)
    }

    /// `attn_sdpa_set_alibi`: head h's logits get −slopes\[h\]·|p − j|.
    /// `slopes` `[heads_q]` is copied; `None` takes Press et al.'s slopes.
    pub fn set_alibi(&mut self, slopes: Option<&[f32]>) -> Result<&mut Self> {
        let s = opt_in("Sdpa::set_alibi", "slopes", slopes, &[self.heads_q])?;
        // SAFETY: slopes is NULL or holds heads_q floats, copied by the call.
        check(unsafe { sys::attn_sdpa_set_alibi(self.raw.as_ptr(), s) })?;
        Ok(self)
    }

    /// `attn_sdpa_clear_alibi`: ALiBi off (the default).
    pub fn clear_alibi(&mut self) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_sdpa_clear_alibi(self.raw.as_ptr()) })?;
        Ok(self)
    }

    /// Elements of `out`: batch·heads_q·len_q·dim_v.
    pub fn out_len(&self) -> usize {
        count(&[self.batch, self.heads_q, self.len_q, self.dim_v]).unwrap_or(0)
    }

    /// Elements of `weights`: batch·heads_q·len_q·len_kv.
    pub fn weights_len(&self) -> usize {
        count(&self.weights_shape()).unwrap_or(0)
    }

    /// Elements of `lse`: batch·heads_q·len_q.
    pub fn lse_len(&self) -> usize {
        count(&[self.batch, self.heads_q, self.len_q]).unwrap_or(0)
    }

    fn weights_shape(&self) -> [i64; 4] {
        [self.batch, self.heads_q, self.len_q, self.len_kv]
    }

    /// Checks q, k, v and a q-shaped, v-shaped tensor for `func`.
    fn check_qkv(&self, func: &str, q: &[f32], k: &[f32], v: &[f32]) -> Result<()> {
        let (b, hq, hkv) = (self.batch, self.heads_q, self.heads_kv);
        extent(func, "q", q.len(), &[b, hq, self.len_q, self.dim_qk])?;
        extent(func, "k", k.len(), &[b, hkv, self.len_kv, self.dim_qk])?;
        extent(func, "v", v.len(), &[b, hkv, self.len_kv, self.dim_v])
    }

    /// `attn_sdpa_forward`: out (written completely) and, if wanted, the
    /// weights (the softmax probabilities, 0 for masked keys; after dropout
    /// if set) and lse (log Σ exp of the logits; −inf for a row with no
    /// visible key, whose out is zeros). `mask`: `None` for no mask beyond
    /// the op's causal setting. Every slice must have exactly the length of
    /// its shape (see [`Sdpa`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &mut Context,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&Mask<'_>>,
        out: &mut [f32],
        weights: Option<&mut [f32]>,
        lse: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Sdpa::forward";
        self.check_qkv(F, q, k, v)?;
        extent(F, "out", out.len(), &[self.batch, self.heads_q, self.len_q, self.dim_v])?;
        let w = opt_out(F, "weights", weights, &self.weights_shape())?;
        let l = opt_out(F, "lse", lse, &[self.batch, self.heads_q, self.len_q])?;
        // SAFETY: every array has the length its shape needs (checked above);
        // the outputs are distinct &mut borrows, so they overlap nothing.
        check(unsafe {
            sys::attn_sdpa_forward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                mask_ptr(mask),
                out.as_mut_ptr(),
                w,
                l,
            )
        })
    }

    /// [`Sdpa::forward`] into a new vector, which it returns.
    pub fn run(
        &self,
        ctx: &mut Context,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&Mask<'_>>,
    ) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.out_len()];
        self.forward(ctx, q, k, v, mask, &mut out, None, None)?;
        Ok(out)
    }

    /// `attn_sdpa_backward` (FlashAttention-2's backward): given d_out =
    /// ∂L/∂out, writes d_q, d_k, d_v (each `None` = not computed, else
    /// overwritten; shapes of q, k, v; with GQA d_k and d_v sum over each
    /// group's query heads) for the forward made with this op (same
    /// settings, dropout seed included) and the same `mask` holding the same
    /// values. `out` and `lse` are that forward's (lse is required).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &mut Context,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&Mask<'_>>,
        out: &[f32],
        lse: &[f32],
        d_out: &[f32],
        d_q: Option<&mut [f32]>,
        d_k: Option<&mut [f32]>,
        d_v: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Sdpa::backward";
        let (b, hq, hkv) = (self.batch, self.heads_q, self.heads_kv);
        self.check_qkv(F, q, k, v)?;
        extent(F, "out", out.len(), &[b, hq, self.len_q, self.dim_v])?;
        extent(F, "lse", lse.len(), &[b, hq, self.len_q])?;
        extent(F, "d_out", d_out.len(), &[b, hq, self.len_q, self.dim_v])?;
        let dq = opt_out(F, "d_q", d_q, &[b, hq, self.len_q, self.dim_qk])?;
        let dk = opt_out(F, "d_k", d_k, &[b, hkv, self.len_kv, self.dim_qk])?;
        let dv = opt_out(F, "d_v", d_v, &[b, hkv, self.len_kv, self.dim_v])?;
        // SAFETY: lengths checked above; the gradients are distinct &mut
        // borrows, so they overlap no input and no other gradient.
        check(unsafe {
            sys::attn_sdpa_backward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                mask_ptr(mask),
                out.as_ptr(),
                lse.as_ptr(),
                d_out.as_ptr(),
                dq,
                dk,
                dv,
            )
        })
    }

    /// `attn_sdpa_forward_cached`: attention of the new queries of
    /// `seqs.len()` sequences of `cache` against their cached keys and
    /// values (append the new ones first). `cu_q` `[seqs.len() + 1]`
    /// starts at 0 and does not decrease: sequence s owns query rows
    /// cu_q\[s\] .. cu_q\[s+1\]. q `[total_q, heads_q, dim_qk]` with total_q
    /// the last cu_q, out `[total_q, heads_q, dim_v]`, lse `None` or
    /// `[total_q, heads_q]`. The op gives the heads, dims (which must match
    /// the cache's), scale and score modifiers; causality is bottom-right
    /// per sequence and there is no dropout. The cache is only read: calls
    /// with their own contexts may share it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_cached(
        &self,
        ctx: &mut Context,
        cache: &KvCache,
        seqs: &[i64],
        cu_q: &[i64],
        q: &[f32],
        out: &mut [f32],
        lse: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Sdpa::forward_cached";
        let total_q = total_rows(F, seqs, cu_q)?;
        extent(F, "q", q.len(), &[total_q, self.heads_q, self.dim_qk])?;
        extent(F, "out", out.len(), &[total_q, self.heads_q, self.dim_v])?;
        let l = opt_out(F, "lse", lse, &[total_q, self.heads_q])?;
        // SAFETY: cu_q has seqs.len() + 1 entries, the tensors the rows cu_q
        // gives (libattn checks cu_q itself before reading them).
        check(unsafe {
            sys::attn_sdpa_forward_cached(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                cache.raw.as_ptr(),
                len64(seqs),
                seqs.as_ptr(),
                cu_q.as_ptr(),
                q.as_ptr(),
                out.as_mut_ptr(),
                l,
            )
        })
    }
}

impl Drop for Sdpa {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_sdpa_destroy(self.raw.as_ptr()) }
    }
}

/// The rows of a ragged batch: checks that cu_q has one entry more than
/// seqs and returns its last (libattn checks that it starts at 0 and does
/// not decrease).
pub(crate) fn total_rows(func: &str, seqs: &[i64], cu_q: &[i64]) -> Result<i64> {
    if cu_q.len() != seqs.len() + 1 {
        let what = format!(
            "cu_q has {} elements, seqs ({}) needs {}",
            cu_q.len(),
            seqs.len(),
            seqs.len() + 1
        );
        return Err(Error::new(Status::SHAPE_MISMATCH, func, what));
    }
    Ok(cu_q[seqs.len()])
}
