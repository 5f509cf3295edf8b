//! Additive (Bahdanau) attention: inference and training.

use crate::context::mask_ptr;
use crate::training::Filler;
use crate::{
    check, create, extent, opt_out, read_i64, sys, Activations, Context, Error, Mask, Result,
    Status, Tape,
};
use std::ptr::NonNull;

/// Additive (Bahdanau) attention (`attn_additive`; D2L §10.3.2):
/// `score(q, k) = w_vᵀ tanh(W_q q + W_k k)`, out = masked softmax(scores)·V.
///
/// queries `[batch, len_q, query_dim]`, keys `[batch, len_kv, key_dim]`,
/// values `[batch, len_kv, dim_v]`, out `[batch, len_q, dim_v]`, weights
/// `[batch, len_q, len_kv]`; masks as SDPA's with one head, no causal
/// setting. Holds copies of its weights; calls take `&self` and may share
/// the op across threads (`Sync`), each with its own [`Context`].
#[derive(Debug)]
pub struct Additive {
    raw: NonNull<sys::attn_additive>,
    query_dim: i64,
    key_dim: i64,
    hidden: i64,
    n_params: i64,
}

// SAFETY: as for Sdpa.
unsafe impl Send for Additive {}
unsafe impl Sync for Additive {}

impl Additive {
    /// `attn_additive_create`: no weights set (forward: [`Status::STATE`]).
    pub fn new(query_dim: i64, key_dim: i64, hidden: i64) -> Result<Additive> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_additive_create(p, query_dim, key_dim, hidden) })?;
        // SAFETY: a live handle and a valid out-pointer.
        let n_params = read_i64(|c| unsafe { sys::attn_additive_param_count(raw.as_ptr(), c) })?;
        Ok(Additive { raw, query_dim, key_dim, hidden, n_params })
    }

    /// `attn_additive_set_weights`: w_q `[hidden, query_dim]`, w_k
    /// `[hidden, key_dim]` (as torch.nn.Linear(.., hidden, bias=False)
    /// weights), w_v `[hidden]`; copied.
    pub fn set_weights(&mut self, w_q: &[f32], w_k: &[f32], w_v: &[f32]) -> Result<&mut Self> {
        const F: &str = "Additive::set_weights";
        extent(F, "w_q", w_q.len(), &[self.hidden, self.query_dim])?;
        extent(F, "w_k", w_k.len(), &[self.hidden, self.key_dim])?;
        extent(F, "w_v", w_v.len(), &[self.hidden])?;
        // SAFETY: lengths checked above.
        check(unsafe {
            sys::attn_additive_set_weights(
                self.raw.as_ptr(),
                w_q.as_ptr(),
                w_k.as_ptr(),
                w_v.as_ptr(),
            )
        })?;
        Ok(self)
    }

    /// `attn_additive_param_count`: hidden·(query_dim + key_dim + 1).
    pub fn param_count(&self) -> usize {
        self.n_params as usize
    }

    fn params_shape(&self) -> [i64; 1] {
        [self.n_params]
    }

    /// `attn_additive_get_params`: params `[param_count]` = W_q, W_k, w_v in
    /// the order of [`Additive::set_weights`]. [`Status::STATE`] before the
    /// weights are set.
    pub fn get_params(&self, params: &mut [f32]) -> Result<()> {
        extent("Additive::get_params", "params", params.len(), &self.params_shape())?;
        // SAFETY: params holds param_count floats.
        check(unsafe { sys::attn_additive_get_params(self.raw.as_ptr(), params.as_mut_ptr()) })
    }

    /// `attn_additive_set_params`: copies params `[param_count]`.
    pub fn set_params(&mut self, params: &[f32]) -> Result<&mut Self> {
        extent("Additive::set_params", "params", params.len(), &self.params_shape())?;
        // SAFETY: params holds param_count floats, copied.
        check(unsafe { sys::attn_additive_set_params(self.raw.as_ptr(), params.as_ptr()) })?;
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_io(
        &self,
        func: &str,
        shape: [i64; 4],
        queries: &[f32],
        keys: &[f32],
        values: &[f32],
        out: &[f32],
    ) -> Result<()> {
        let [batch, len_q, len_kv, dim_v] = shape;
        extent(func, "queries", queries.len(), &[batch, len_q, self.query_dim])?;
        extent(func, "keys", keys.len(), &[batch, len_kv, self.key_dim])?;
        extent(func, "values", values.len(), &[batch, len_kv, dim_v])?;
        extent(func, "out", out.len(), &[batch, len_q, dim_v])
    }

    /// `attn_additive_forward`: out (written completely) and, if wanted, the
    /// weights; `mask` `None` or for batch, 1 head, len_q, len_kv.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &mut Context,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        dim_v: i64,
        queries: &[f32],
        keys: &[f32],
        values: &[f32],
        mask: Option<&Mask<'_>>,
        out: &mut [f32],
        weights: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Additive::forward";
        self.check_io(F, [batch, len_q, len_kv, dim_v], queries, keys, values, out)?;
        let w = opt_out(F, "weights", weights, &[batch, len_q, len_kv])?;
        // SAFETY: lengths checked above; outputs are distinct &mut borrows.
        check(unsafe {
            sys::attn_additive_forward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                batch,
                len_q,
                len_kv,
                dim_v,
                queries.as_ptr(),
                keys.as_ptr(),
                values.as_ptr(),
                mask_ptr(mask),
                out.as_mut_ptr(),
                w,
            )
        })
    }

    /// `attn_additive_forward_train`: [`Additive::forward`] that also fills
    /// `act`; the returned [`Tape`] borrows `act` and `mask` until
    /// [`Additive::backward`] has used it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train<'t>(
        &self,
        ctx: &mut Context,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        dim_v: i64,
        queries: &[f32],
        keys: &[f32],
        values: &[f32],
        mask: Option<&'t Mask<'t>>,
        out: &mut [f32],
        weights: Option<&mut [f32]>,
        act: &'t mut Activations,
    ) -> Result<Tape<'t>> {
        const F: &str = "Additive::forward_train";
        self.check_io(F, [batch, len_q, len_kv, dim_v], queries, keys, values, out)?;
        let w = opt_out(F, "weights", weights, &[batch, len_q, len_kv])?;
        // SAFETY: lengths checked above; act and mask are borrowed by the tape.
        check(unsafe {
            sys::attn_additive_forward_train(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                batch,
                len_q,
                len_kv,
                dim_v,
                queries.as_ptr(),
                keys.as_ptr(),
                values.as_ptr(),
                mask_ptr(mask),
                out.as_mut_ptr(),
                w,
                act.raw_mut(),
            )
        })?;
        Ok(Tape::new(act, Filler::Additive, batch, len_q, len_kv, dim_v))
    }

    /// `attn_additive_backward`: given d_out `[batch, len_q, dim_v]`, writes
    /// d_queries `[batch, len_q, query_dim]`, d_keys `[batch, len_kv,
    /// key_dim]`, d_values `[batch, len_kv, dim_v]` and d_params
    /// `[param_count]`; each `None` = not computed, else overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        d_queries: Option<&mut [f32]>,
        d_keys: Option<&mut [f32]>,
        d_values: Option<&mut [f32]>,
        d_params: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Additive::backward";
        tape.expect(F, Filler::Additive)?;
        let (b, lq, lkv, dv) = (tape.batch, tape.len_q, tape.len_kv, tape.dim_v);
        extent(F, "d_out", d_out.len(), &[b, lq, dv])?;
        let dqp = opt_out(F, "d_queries", d_queries, &[b, lq, self.query_dim])?;
        let dkp = opt_out(F, "d_keys", d_keys, &[b, lkv, self.key_dim])?;
        let dvp = opt_out(F, "d_values", d_values, &[b, lkv, dv])?;
        let dpp = opt_out(F, "d_params", d_params, &self.params_shape())?;
        self.call_backward(ctx, tape, d_out, [dqp, dkp, dvp, dpp])
    }

    /// [`Additive::backward`] when keys and values are one tensor (D2L's
    /// habit; key_dim = dim_v): `d_keys_values` `[batch, len_kv, key_dim]`
    /// receives the sum of both gradients (libattn's same-pointer rule).
    pub fn backward_keys_are_values(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        d_queries: Option<&mut [f32]>,
        d_keys_values: &mut [f32],
        d_params: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "Additive::backward_keys_are_values";
        tape.expect(F, Filler::Additive)?;
        let (b, lq, lkv, dv) = (tape.batch, tape.len_q, tape.len_kv, tape.dim_v);
        if dv != self.key_dim {
            let what = format!("dim_v ({}) is not key_dim ({})", dv, self.key_dim);
            return Err(Error::new(Status::SHAPE_MISMATCH, F, what));
        }
        extent(F, "d_out", d_out.len(), &[b, lq, dv])?;
        let dqp = opt_out(F, "d_queries", d_queries, &[b, lq, self.query_dim])?;
        extent(F, "d_keys_values", d_keys_values.len(), &[b, lkv, dv])?;
        let dkv = d_keys_values.as_mut_ptr();
        let dpp = opt_out(F, "d_params", d_params, &self.params_shape())?;
        self.call_backward(ctx, tape, d_out, [dqp, dkv, dkv, dpp])
    }

    fn call_backward(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        outs: [*mut f32; 4],
    ) -> Result<()> {
        // SAFETY: the callers checked every length; the outputs are distinct
        // &mut borrows, except d_keys = d_values on purpose.
        check(unsafe {
            sys::attn_additive_backward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                tape.raw(),
                d_out.as_ptr(),
                outs[0],
                outs[1],
                outs[2],
                outs[3],
            )
        })
    }
}

impl Drop for Additive {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_additive_destroy(self.raw.as_ptr()) }
    }
}
