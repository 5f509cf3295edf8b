//! What training forwards keep for their backwards ([`Activations`] and the
//! [`Tape`] that borrows them), and Nadaraya–Watson regression with its
//! gradients.

use crate::{check, create, extent, len64, opt_out, sys, Context, Error, Mask, Result, Status};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

/// A growable buffer for what a layer's training forward keeps for its
/// backward (`attn_activations`): copies of the inputs, the projections,
/// the attention output and its lse; O(batch · len · embed_dim) floats,
/// never len_q × len_kv. It keeps its memory from step to step.
///
/// A training forward ([`Mha::forward_train`](crate::Mha::forward_train),
/// [`Additive::forward_train`](crate::Additive::forward_train),
/// [`EncoderLayer::forward_train`](crate::EncoderLayer::forward_train))
/// borrows it mutably and returns a [`Tape`], which the matching backward
/// reads; the next training forward overwrites it. `Send + Sync`: a backward
/// only reads it, so several may share one tape.
#[derive(Debug)]
pub struct Activations {
    raw: NonNull<sys::attn_activations>,
}

// SAFETY: attn_training.h: one thread at a time per object for the
// forwards that fill it (&mut here); backwards only read it and "concurrent
// calls may share mha and act".
unsafe impl Send for Activations {}
unsafe impl Sync for Activations {}

impl Activations {
    /// An empty buffer (`attn_activations_create`).
    pub fn new() -> Result<Activations> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_activations_create(p) })?;
        Ok(Activations { raw })
    }

    /// The C activations, for a training forward (which fills them).
    pub(crate) fn raw_mut(&mut self) -> *mut sys::attn_activations {
        self.raw.as_ptr()
    }
}

impl Drop for Activations {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once; no tape borrows it.
        unsafe { sys::attn_activations_destroy(self.raw.as_ptr()) }
    }
}

/// Which training forward filled a tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filler {
    Mha,
    Additive,
    Encoder,
}

/// The record of one training forward, for its backward: it borrows the
/// [`Activations`] the forward filled and the [`Mask`] it used, because
/// libattn keeps a pointer to that mask until the backward reads it. The
/// shapes it holds let the backward check its slices. Backwards take it by
/// `&`, so one tape serves repeated or concurrent backwards (each with its
/// own [`Context`]). A backward of another layer than the one that filled
/// it, or after that layer's parameters or options changed, fails with
/// [`Status::STATE`].
///
/// A training loop (self-attention, L = |out|²/2, so d_out = out):
///
/// ```
/// use attn::{Activations, Context, Mask, Mha};
/// let mut mha = Mha::new(2, 1, 1, 2, 2, false)?;
/// let mut params = vec![0.5f32; mha.param_count()];
/// let mut ctx = Context::new()?;
/// let mut act = Activations::new()?;
/// let x = [0.1f32, 0.2, 0.3, 0.4]; // [batch 1, len 2, embed_dim 2]
/// let lengths = [2i64];
/// let mut mask = Mask::new()?;
/// mask.set_kv_lengths(&lengths, 1)?;
/// let (mut out, mut d_x) = ([0.0f32; 4], [0.0f32; 4]);
/// let mut d_params = vec![0.0f32; mha.param_count()];
/// for _step in 0..3 {
///     mha.set_params(&params)?;
///     let m = Some(&mask);
///     let tape = mha.forward_train(&mut ctx, 1, 2, 2, &x, &x, &x, m, &mut out, None, &mut act)?;
///     mha.backward_self_attention(&mut ctx, &tape, &out, &mut d_x, Some(&mut d_params))?;
///     for (p, g) in params.iter_mut().zip(&d_params) {
///         *p -= 0.1 * g;
///     }
/// } // each tape ends with its step: act and mask are free again
/// # Ok::<(), attn::Error>(())
/// ```
///
/// The borrow checker refuses a mask that dies before the tape's backward,
/// as libattn would read it there:
///
/// ```compile_fail
/// use attn::{Activations, Context, Mask, Mha};
/// let mut mha = Mha::new(2, 1, 1, 2, 2, false)?;
/// mha.set_params(&vec![0.5f32; mha.param_count()])?;
/// let mut ctx = Context::new()?;
/// let mut act = Activations::new()?;
/// let x = [0.1f32, 0.2, 0.3, 0.4];
/// let (mut out, mut d_x) = ([0.0f32; 4], [0.0f32; 4]);
/// let tape = {
///     let lengths = [2i64];
///     let mut mask = Mask::new()?;
///     mask.set_kv_lengths(&lengths, 1)?;
///     mha.forward_train(&mut ctx, 1, 2, 2, &x, &x, &x, Some(&mask), &mut out, None, &mut act)?
/// }; // the mask is gone here
/// mha.backward_self_attention(&mut ctx, &tape, &out, &mut d_x, None)?;
/// # Ok::<(), attn::Error>(())
/// ```
///
/// and a second training forward into the same activations while the
/// first tape is still to be used:
///
/// ```compile_fail
/// use attn::{Activations, Context, Mha};
/// let mut mha = Mha::new(2, 1, 1, 2, 2, false)?;
/// mha.set_params(&vec![0.5f32; mha.param_count()])?;
/// let mut ctx = Context::new()?;
/// let mut act = Activations::new()?;
/// let x = [0.1f32, 0.2, 0.3, 0.4];
/// let (mut out, mut d_x) = ([0.0f32; 4], [0.0f32; 4]);
/// let tape = mha.forward_train(&mut ctx, 1, 2, 2, &x, &x, &x, None, &mut out, None, &mut act)?;
/// let again = mha.forward_train(&mut ctx, 1, 2, 2, &x, &x, &x, None, &mut out, None, &mut act)?;
/// mha.backward_self_attention(&mut ctx, &tape, &out, &mut d_x, None)?;
/// # Ok::<(), attn::Error>(())
/// ```
#[derive(Debug)]
pub struct Tape<'t> {
    act: &'t Activations,
    pub(crate) filler: Filler,
    pub(crate) batch: i64,
    pub(crate) len_q: i64,
    pub(crate) len_kv: i64,
    pub(crate) dim_v: i64,
    _mask: PhantomData<&'t Mask<'t>>,
}

impl<'t> Tape<'t> {
    pub(crate) fn new(
        act: &'t mut Activations,
        filler: Filler,
        batch: i64,
        len_q: i64,
        len_kv: i64,
        dim_v: i64,
    ) -> Tape<'t> {
        Tape { act, filler, batch, len_q, len_kv, dim_v, _mask: PhantomData }
    }

    /// The C activations, for a backward call (which only reads them).
    pub(crate) fn raw(&self) -> *const sys::attn_activations {
        self.act.raw.as_ptr()
    }

    /// Refuses a tape of another kind of layer before any length check.
    pub(crate) fn expect(&self, func: &str, filler: Filler) -> Result<()> {
        if self.filler == filler {
            return Ok(());
        }
        let what = format!("the tape was filled by {:?}::forward_train", self.filler);
        Err(Error::new(Status::STATE, func, what))
    }

    /// batch of the forward that filled the tape.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// len_q of the forward (len for an encoder layer).
    pub fn len_q(&self) -> i64 {
        self.len_q
    }

    /// len_kv of the forward (len for an encoder layer).
    pub fn len_kv(&self) -> i64 {
        self.len_kv
    }
}

/// `attn_nadaraya_watson` (D2L §10.2): `out[i] = Σ_j softmax_j(−((x_i −
/// k_j)·w)²/2) · v_j` over scalar queries x `[n_queries]` and keys
/// `[n_keys]` with values `[n_keys]`; out `[n_queries]`; weights `None` or
/// `[n_queries, n_keys]`. w = 1 is the non-parametric form. With no keys,
/// out is zeros.
pub fn nadaraya_watson(
    ctx: &mut Context,
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    w: f32,
    out: &mut [f32],
    weights: Option<&mut [f32]>,
) -> Result<()> {
    const F: &str = "nadaraya_watson";
    let (nq, nk) = (len64(queries), len64(keys));
    extent(F, "values", values.len(), &[nk])?;
    extent(F, "out", out.len(), &[nq])?;
    let wp = opt_out(F, "weights", weights, &[nq, nk])?;
    // SAFETY: lengths checked above.
    check(unsafe {
        sys::attn_nadaraya_watson(
            ctx.raw.as_ptr(),
            nq,
            nk,
            queries.as_ptr(),
            keys.as_ptr(),
            values.as_ptr(),
            w,
            out.as_mut_ptr(),
            wp,
        )
    })
}

/// `attn_nadaraya_watson_backward`: given d_out = ∂L/∂out `[n_queries]`
/// for the same queries, keys, values and w, writes ∂L/∂queries
/// `[n_queries]`, ∂L/∂keys `[n_keys]`, ∂L/∂values `[n_keys]` and ∂L/∂w (the
/// kernel width of D2L §10.2.4's parametric regression); each `None` = not
/// computed, else overwritten. Sums run in double on the calling thread:
/// the same bits every call.
#[allow(clippy::too_many_arguments)]
pub fn nadaraya_watson_backward(
    ctx: &mut Context,
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    w: f32,
    d_out: &[f32],
    d_queries: Option<&mut [f32]>,
    d_keys: Option<&mut [f32]>,
    d_values: Option<&mut [f32]>,
    d_w: Option<&mut f32>,
) -> Result<()> {
    const F: &str = "nadaraya_watson_backward";
    let (nq, nk) = (len64(queries), len64(keys));
    extent(F, "values", values.len(), &[nk])?;
    extent(F, "d_out", d_out.len(), &[nq])?;
    let dq = opt_out(F, "d_queries", d_queries, &[nq])?;
    let dk = opt_out(F, "d_keys", d_keys, &[nk])?;
    let dv = opt_out(F, "d_values", d_values, &[nk])?;
    let dw = d_w.map_or(ptr::null_mut(), |w| w as *mut f32);
    // SAFETY: lengths checked above; the outputs are distinct &mut borrows.
    check(unsafe {
        sys::attn_nadaraya_watson_backward(
            ctx.raw.as_ptr(),
            nq,
            nk,
            queries.as_ptr(),
            keys.as_ptr(),
            values.as_ptr(),
            w,
            d_out.as_ptr(),
            dq,
            dk,
            dv,
            dw,
        )
    })
}
