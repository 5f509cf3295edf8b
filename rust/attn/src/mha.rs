//! The multi-head attention layer: inference, training, score modifiers,
//! RoPE and the cached step of decoding.

use crate::context::mask_ptr;
use crate::sdpa::total_rows;
use crate::training::Filler;
use crate::{
    check, create, extent, len64, opt_out, read_i64, sys, Activations, Causal, Context, Error,
    KvCache, Mask, MhaProperty, Proj, Result, Rope, Status, Tape,
};
use std::os::raw::c_int;
use std::ptr::{self, NonNull};

/// A multi-head attention layer with PyTorch's numbers (`attn_mha`;
/// nn.MultiheadAttention with batch_first=True). With head_dim =
/// embed_dim / num_heads and kv_dim = num_kv_heads·head_dim:
///
/// query `[batch, len_q, embed_dim]`, key `[batch, len_kv, kdim]`, value
/// `[batch, len_kv, vdim]` (self-attention: the same slice thrice), out
/// `[batch, len_q, embed_dim]`, weights `[batch, num_heads, len_q, len_kv]`
/// (each head's probabilities). num_kv_heads < num_heads is grouped-query
/// attention.
///
/// The layer holds copies of its weights; calls take `&self` and may run on
/// several threads at once (`Sync`), each with its own [`Context`]; setters
/// take `&mut self`. A setter makes the activations of earlier training
/// forwards stale (their backward: [`Status::STATE`]).
#[derive(Debug)]
pub struct Mha {
    raw: NonNull<sys::attn_mha>,
    embed_dim: i64,
    num_heads: i64,
    kv_dim: i64,
    kdim: i64,
    vdim: i64,
    bias: bool,
    n_params: i64,
}

// SAFETY: as for Sdpa: immutable during calls, setters take &mut self.
unsafe impl Send for Mha {}
unsafe impl Sync for Mha {}

impl Mha {
    /// `attn_mha_create`: a layer with no weights set (forward fails with
    /// [`Status::STATE`] until all four projections are set), no causal
    /// restriction. embed_dim a multiple of num_heads, num_heads a multiple
    /// of num_kv_heads; `bias`: every projection has a bias vector.
    pub fn new(
        embed_dim: i64,
        num_heads: i64,
        num_kv_heads: i64,
        kdim: i64,
        vdim: i64,
        bias: bool,
    ) -> Result<Mha> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe {
            sys::attn_mha_create(p, embed_dim, num_heads, num_kv_heads, kdim, vdim, bias as c_int)
        })?;
        // The sizes are valid: creation succeeded.
        let kv_dim = embed_dim / num_heads * num_kv_heads;
        let mut mha = Mha { raw, embed_dim, num_heads, kv_dim, kdim, vdim, bias, n_params: 0 };
        // SAFETY: a live handle and a valid out-pointer.
        mha.n_params = read_i64(|c| unsafe { sys::attn_mha_param_count(raw.as_ptr(), c) })?;
        Ok(mha)
    }

    /// `attn_mha_set_weights`: weight `[out_features, in_features]` (as
    /// torch.nn.Linear.weight; shapes in [`Proj`]), bias `[out_features]`
    /// (`None` on a layer made without biases); both copied.
    pub fn set_weights(
        &mut self,
        which: Proj,
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<&mut Self> {
        const F: &str = "Mha::set_weights";
        let (rows, cols) = match which {
            Proj::Q | Proj::O => (self.embed_dim, self.embed_dim),
            Proj::K => (self.kv_dim, self.kdim),
            Proj::V => (self.kv_dim, self.vdim),
            _ => (-1, -1), // not an attn_proj: libattn says so
        };
        extent(F, "weight", weight.len(), &[rows, cols])?;
        if let (true, Some(b)) = (self.bias, bias) {
            extent(F, "bias", b.len(), &[rows])?;
        }
        let b = bias.map_or(ptr::null(), |b| b.as_ptr());
        // SAFETY: weight and bias have the lengths of the projection; they are
        // copied. An invalid `which` is rejected before anything is read, and
        // so is a bias on a layer without biases.
        check(unsafe {
            sys::attn_mha_set_weights(self.raw.as_ptr(), which.0, weight.as_ptr(), b)
        })?;
        Ok(self)
    }

    /// `attn_mha_set_causal`, applied with any mask.
    pub fn set_causal(&mut self, causal: Causal) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_set_causal(self.raw.as_ptr(), causal.0) })?;
        Ok(self)
    }

    /// `attn_mha_get_property`: one of the layer's sizes or settings.
    pub fn property(&self, what: MhaProperty) -> Result<i64> {
        // SAFETY: a live handle and a valid out-pointer.
        read_i64(|v| unsafe { sys::attn_mha_get_property(self.raw.as_ptr(), what.0, v) })
    }

    /// `attn_mha_param_count`: floats of the flat parameter vector,
    /// 2·E² + kv_dim·(kdim + vdim), plus 2·E + 2·kv_dim with bias.
    pub fn param_count(&self) -> usize {
        self.n_params as usize
    }

    /// `attn_mha_get_params`: params `[param_count]` in the order of
    /// nn.MultiheadAttention's named_parameters(): Wq `[E, E]`, Wk
    /// `[kv_dim, kdim]`, Wv `[kv_dim, vdim]`, then bq, bk, bv (with bias),
    /// Wo `[E, E]`, bo (with bias). Fails with [`Status::STATE`] before the
    /// weights are set.
    pub fn get_params(&self, params: &mut [f32]) -> Result<()> {
        extent("Mha::get_params", "params", params.len(), &[self.n_params])?;
        // SAFETY: params holds param_count floats.
        check(unsafe { sys::attn_mha_get_params(self.raw.as_ptr(), params.as_mut_ptr()) })
    }

    /// [`Mha::get_params`] into a new vector.
    pub fn params(&self) -> Result<Vec<f32>> {
        let mut params = vec![0.0f32; self.param_count()];
        self.get_params(&mut params)?;
        Ok(params)
    }

    /// `attn_mha_set_params`: copies params `[param_count]` (the layout of
    /// [`Mha::get_params`]), setting all four projections.
    pub fn set_params(&mut self, params: &[f32]) -> Result<&mut Self> {
        extent("Mha::set_params", "params", params.len(), &[self.n_params])?;
        // SAFETY: params holds param_count floats, copied.
        check(unsafe { sys::attn_mha_set_params(self.raw.as_ptr(), params.as_ptr()) })?;
        Ok(self)
    }

    /// `attn_mha_set_dropout`: dropout on the attention weights of
    /// [`Mha::forward_train`] (never of [`Mha::forward`]): p in [0, 1), the
    /// keep decisions a pure function of seed; pass a new seed per step.
    pub fn set_dropout(&mut self, p: f32, seed: u64) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_set_dropout(self.raw.as_ptr(), p, seed) })?;
        Ok(self)
    }

    /// `attn_mha_set_window`: see [`Sdpa::set_window`](crate::Sdpa::set_window).
    pub fn set_window(&mut self, left: i64, right: i64) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_set_window(self.raw.as_ptr(), left, right) })?;
        Ok(self)
    }

    /// `attn_mha_set_softcap`: see [`Sdpa::set_softcap`](crate::Sdpa::set_softcap).
    pub fn set_softcap(&mut self, cap: f32) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_set_softcap(self.raw.as_ptr(), cap) })?;
        Ok(self)
    }

    /// `attn_mha_set_alibi`: slopes `[num_heads]`, copied; `None` for Press
    /// et al.'s.
    pub fn set_alibi(&mut self, slopes: Option<&[f32]>) -> Result<&mut Self> {
        let s = crate::opt_in("Mha::set_alibi", "slopes", slopes, &[self.num_heads])?;
        // SAFETY: NULL or num_heads floats, copied.
        check(unsafe { sys::attn_mha_set_alibi(self.raw.as_ptr(), s) })?;
        Ok(self)
    }

    /// `attn_mha_clear_alibi`.
    pub fn clear_alibi(&mut self) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_clear_alibi(self.raw.as_ptr()) })?;
        Ok(self)
    }

    /// `attn_mha_set_rope`: the layer keeps a copy of `rope` (`None` removes
    /// it) and rotates the projected queries and keys with it, key j at
    /// position j and query i at its aligned position (i with
    /// [`Causal::TOP_LEFT`], i + len_kv − len_q otherwise). The rope's
    /// head_dim must be embed_dim / num_heads.
    pub fn set_rope(&mut self, rope: Option<&Rope>) -> Result<&mut Self> {
        let r = rope.map_or(ptr::null(), |r| r.raw.as_ptr() as *const sys::attn_rope);
        // SAFETY: a live handle; the rope is copied.
        check(unsafe { sys::attn_mha_set_rope(self.raw.as_ptr(), r) })?;
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_io(
        &self,
        func: &str,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        query: &[f32],
        key: &[f32],
        value: &[f32],
        out: &[f32],
    ) -> Result<()> {
        extent(func, "query", query.len(), &[batch, len_q, self.embed_dim])?;
        extent(func, "key", key.len(), &[batch, len_kv, self.kdim])?;
        extent(func, "value", value.len(), &[batch, len_kv, self.vdim])?;
        extent(func, "out", out.len(), &[batch, len_q, self.embed_dim])
    }

    /// `attn_mha_forward`: out (written completely) and, if wanted, each
    /// head's weights; `mask` `None` or for batch, num_heads, len_q, len_kv.
    /// Inference: no dropout.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &mut Context,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        query: &[f32],
        key: &[f32],
        value: &[f32],
        mask: Option<&Mask<'_>>,
        out: &mut [f32],
        weights: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Mha::forward";
        self.check_io(F, batch, len_q, len_kv, query, key, value, out)?;
        let w = opt_out(F, "weights", weights, &[batch, self.num_heads, len_q, len_kv])?;
        // SAFETY: lengths checked above; outputs are distinct &mut borrows.
        check(unsafe {
            sys::attn_mha_forward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                batch,
                len_q,
                len_kv,
                query.as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                mask_ptr(mask),
                out.as_mut_ptr(),
                w,
            )
        })
    }

    /// `attn_mha_forward_train`: [`Mha::forward`] with dropout if set, which
    /// also fills `act` for the backward. The returned [`Tape`] borrows
    /// `act` and `mask` (libattn keeps a pointer to the mask until the
    /// backward): keep it for [`Mha::backward`], then drop it to reuse them.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train<'t>(
        &self,
        ctx: &mut Context,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        query: &[f32],
        key: &[f32],
        value: &[f32],
        mask: Option<&'t Mask<'t>>,
        out: &mut [f32],
        weights: Option<&mut [f32]>,
        act: &'t mut Activations,
    ) -> Result<Tape<'t>> {
        const F: &str = "Mha::forward_train";
        self.check_io(F, batch, len_q, len_kv, query, key, value, out)?;
        let w = opt_out(F, "weights", weights, &[batch, self.num_heads, len_q, len_kv])?;
        // SAFETY: lengths checked above; act is borrowed mutably (one
        // forward at a time), and with the mask for the tape's life.
        check(unsafe {
            sys::attn_mha_forward_train(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                batch,
                len_q,
                len_kv,
                query.as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                mask_ptr(mask),
                out.as_mut_ptr(),
                w,
                act.raw_mut(),
            )
        })?;
        Ok(Tape::new(act, Filler::Mha, batch, len_q, len_kv, self.embed_dim))
    }

    /// `attn_mha_backward`: given d_out = ∂L/∂out `[batch, len_q,
    /// embed_dim]` of the forward that filled `tape`, writes d_query
    /// `[batch, len_q, embed_dim]`, d_key `[batch, len_kv, kdim]`, d_value
    /// `[batch, len_kv, vdim]` and d_params `[param_count]` (the layout of
    /// [`Mha::get_params`]); each `None` = not computed, else overwritten.
    /// The tape must come from this layer, unchanged since
    /// ([`Status::STATE`] otherwise).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        d_query: Option<&mut [f32]>,
        d_key: Option<&mut [f32]>,
        d_value: Option<&mut [f32]>,
        d_params: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Mha::backward";
        tape.expect(F, Filler::Mha)?;
        let (b, lq, lkv) = (tape.batch, tape.len_q, tape.len_kv);
        extent(F, "d_out", d_out.len(), &[b, lq, self.embed_dim])?;
        let dq = opt_out(F, "d_query", d_query, &[b, lq, self.embed_dim])?;
        let dk = opt_out(F, "d_key", d_key, &[b, lkv, self.kdim])?;
        let dv = opt_out(F, "d_value", d_value, &[b, lkv, self.vdim])?;
        let dp = opt_out(F, "d_params", d_params, &[self.n_params])?;
        // SAFETY: lengths checked above; outputs are distinct &mut borrows;
        // the tape's act and mask are alive (borrowed by the tape).
        check(unsafe {
            sys::attn_mha_backward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                tape.raw(),
                d_out.as_ptr(),
                dq,
                dk,
                dv,
                dp,
            )
        })
    }

    /// [`Mha::backward`] for self-attention: `d_x` `[batch, len, embed_dim]`
    /// receives the sum of the gradients with respect to query, key and
    /// value, i.e. the gradient with respect to the one input passed as all
    /// three (libattn's same-pointer rule). Needs len_q = len_kv and
    /// kdim = vdim = embed_dim.
    pub fn backward_self_attention(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        d_x: &mut [f32],
        d_params: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Mha::backward_self_attention";
        tape.expect(F, Filler::Mha)?;
        if tape.len_q != tape.len_kv || self.kdim != self.embed_dim || self.vdim != self.embed_dim {
            let what = format!(
                "not self-attention: len_q {}, len_kv {}, embed_dim {}, kdim {}, vdim {}",
                tape.len_q, tape.len_kv, self.embed_dim, self.kdim, self.vdim
            );
            return Err(Error::new(Status::SHAPE_MISMATCH, F, what));
        }
        extent(F, "d_out", d_out.len(), &[tape.batch, tape.len_q, self.embed_dim])?;
        extent(F, "d_x", d_x.len(), &[tape.batch, tape.len_q, self.embed_dim])?;
        let dp = opt_out(F, "d_params", d_params, &[self.n_params])?;
        let dx = d_x.as_mut_ptr();
        // SAFETY: lengths checked above; d_x is passed thrice on purpose
        // (libattn sums into one buffer), and overlaps nothing else.
        check(unsafe {
            sys::attn_mha_backward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                tape.raw(),
                d_out.as_ptr(),
                dx,
                dx,
                dx,
                dp,
            )
        })
    }

    /// `attn_mha_forward_cached`: the layer's step with a cache for
    /// self-attention (kdim = vdim = embed_dim): projects query `[total_q,
    /// embed_dim]` (the new tokens of `seqs.len()` sequences, rows as `cu_q`
    /// says, see [`Sdpa::forward_cached`](crate::Sdpa::forward_cached)),
    /// rotates with the layer's rope at the positions after each sequence's
    /// cached length, appends K and V to `cache` (made with heads_kv =
    /// num_kv_heads, dims = head_dim), attends causally and writes out
    /// `[total_q, embed_dim]`. Decoding token by token gives the numbers of
    /// one causal [`Mha::forward`] over the whole sequence to float32
    /// rounding. On failure the cache and out are unchanged.
    pub fn forward_cached(
        &self,
        ctx: &mut Context,
        cache: &mut KvCache,
        seqs: &[i64],
        cu_q: &[i64],
        query: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        const F: &str = "Mha::forward_cached";
        let total_q = total_rows(F, seqs, cu_q)?;
        extent(F, "query", query.len(), &[total_q, self.embed_dim])?;
        extent(F, "out", out.len(), &[total_q, self.embed_dim])?;
        // SAFETY: lengths checked above; the cache is borrowed mutably.
        check(unsafe {
            sys::attn_mha_forward_cached(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                cache.raw.as_ptr(),
                len64(seqs),
                seqs.as_ptr(),
                cu_q.as_ptr(),
                query.as_ptr(),
                out.as_mut_ptr(),
            )
        })
    }
}

impl Drop for Mha {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_mha_destroy(self.raw.as_ptr()) }
    }
}
