//! The Transformer encoder layer and layer normalisation (attn_encoder.h).

use crate::context::mask_ptr;
use crate::sdpa::total_rows;
use crate::training::Filler;
use crate::{
    check, create, extent, len64, opt_out, read_i64, sys, Activation, Activations, Causal, Context,
    KvCache, Mask, Result, Tape,
};
use std::os::raw::c_int;
use std::ptr::{self, NonNull};

/// One Transformer encoder layer with the numbers of PyTorch's
/// nn.TransformerEncoderLayer(batch_first=True) (`attn_encoder_layer`):
/// self-attention of nhead heads and a feed-forward of dim_feedforward
/// units, each in a residual connection and a layer norm, post-norm
/// (Vaswani, D2L) or pre-norm (GPT-2).
///
/// src and out `[batch, len, d_model]`; masks as [`Mha::forward`]'s with
/// num_heads = nhead, len_q = len_kv = len. Holds copies of its parameters;
/// calls take `&self` and may share the layer across threads (`Sync`), each
/// with its own [`Context`]; setters take `&mut self` and make earlier
/// activations stale.
///
/// [`Mha::forward`]: crate::Mha::forward
#[derive(Debug)]
pub struct EncoderLayer {
    raw: NonNull<sys::attn_encoder_layer>,
    d_model: i64,
    n_params: i64,
}

// SAFETY: immutable during calls ("concurrent calls may share layer");
// setters take &mut self.
unsafe impl Send for EncoderLayer {}
unsafe impl Sync for EncoderLayer {}

impl EncoderLayer {
    /// `attn_encoder_layer_create`: d_model a multiple of nhead, the
    /// activation, `norm_first` (false: post-norm, true: pre-norm) and the
    /// norms' eps (PyTorch's default 1e-5). Parameters unset (forward:
    /// [`Status::STATE`](crate::Status::STATE)), no causal mask, no dropout.
    pub fn new(
        d_model: i64,
        nhead: i64,
        dim_feedforward: i64,
        activation: Activation,
        norm_first: bool,
        layer_norm_eps: f32,
    ) -> Result<EncoderLayer> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe {
            sys::attn_encoder_layer_create(
                p,
                d_model,
                nhead,
                dim_feedforward,
                activation.0,
                norm_first as c_int,
                layer_norm_eps,
            )
        })?;
        // SAFETY: a live handle and a valid out-pointer.
        let n_params =
            read_i64(|c| unsafe { sys::attn_encoder_layer_param_count(raw.as_ptr(), c) })?;
        Ok(EncoderLayer { raw, d_model, n_params })
    }

    /// `attn_encoder_layer_set_causal`: position i sees positions j <= i
    /// ([`Causal::TOP_LEFT`]; the alignments agree here), with any mask.
    pub fn set_causal(&mut self, causal: Causal) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_encoder_layer_set_causal(self.raw.as_ptr(), causal.0) })?;
        Ok(self)
    }

    /// `attn_encoder_layer_set_dropout`: dropout of the training forward
    /// (attention weights, feed-forward activation, both blocks' outputs),
    /// p in [0, 1), keep decisions a pure function of seed. A new layer has
    /// p = 0 (PyTorch's module default is 0.1).
    pub fn set_dropout(&mut self, p: f32, seed: u64) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_encoder_layer_set_dropout(self.raw.as_ptr(), p, seed) })?;
        Ok(self)
    }

    /// `attn_encoder_layer_param_count`: 4·d² + 4·d + 2·d·ff + ff + d + 4·d
    /// floats (d = d_model, ff = dim_feedforward).
    pub fn param_count(&self) -> usize {
        self.n_params as usize
    }

    /// `attn_encoder_layer_get_params`: params `[param_count]` in the order
    /// of nn.TransformerEncoderLayer's named_parameters(): in_proj_weight
    /// `[3d, d]`, in_proj_bias `[3d]`, out_proj weight `[d, d]` and bias
    /// `[d]`, linear1 `[ff, d]` + `[ff]`, linear2 `[d, ff]` + `[d]`, norm1
    /// weight and bias `[d]`, norm2 weight and bias `[d]`.
    pub fn get_params(&self, params: &mut [f32]) -> Result<()> {
        extent("EncoderLayer::get_params", "params", params.len(), &[self.n_params])?;
        // SAFETY: params holds param_count floats.
        check(unsafe { sys::attn_encoder_layer_get_params(self.raw.as_ptr(), params.as_mut_ptr()) })
    }

    /// `attn_encoder_layer_set_params`: copies params `[param_count]`.
    pub fn set_params(&mut self, params: &[f32]) -> Result<&mut Self> {
        extent("EncoderLayer::set_params", "params", params.len(), &[self.n_params])?;
        // SAFETY: params holds param_count floats, copied.
        check(unsafe { sys::attn_encoder_layer_set_params(self.raw.as_ptr(), params.as_ptr()) })?;
        Ok(self)
    }

    /// SAFETY of callers: src and out hold batch·len·d_model floats (or the
    /// sizes are invalid, which libattn rejects first).
    #[allow(clippy::too_many_arguments)]
    unsafe fn call_forward(
        &self,
        ctx: &mut Context,
        batch: i64,
        len: i64,
        src: *const f32,
        mask: Option<&Mask<'_>>,
        out: *mut f32,
        act: *mut sys::attn_activations,
    ) -> Result<()> {
        check(sys::attn_encoder_layer_forward(
            ctx.raw.as_ptr(),
            self.raw.as_ptr(),
            batch,
            len,
            src,
            mask_ptr(mask),
            out,
            act,
        ))
    }

    /// `attn_encoder_layer_forward` for inference (no dropout): out
    /// `[batch, len, d_model]` from src `[batch, len, d_model]`.
    pub fn forward(
        &self,
        ctx: &mut Context,
        batch: i64,
        len: i64,
        src: &[f32],
        mask: Option<&Mask<'_>>,
        out: &mut [f32],
    ) -> Result<()> {
        const F: &str = "EncoderLayer::forward";
        extent(F, "src", src.len(), &[batch, len, self.d_model])?;
        extent(F, "out", out.len(), &[batch, len, self.d_model])?;
        // SAFETY: lengths checked above; out is a distinct &mut borrow.
        unsafe {
            self.call_forward(
                ctx,
                batch,
                len,
                src.as_ptr(),
                mask,
                out.as_mut_ptr(),
                ptr::null_mut(),
            )
        }
    }

    /// [`EncoderLayer::forward`] in place: x `[batch, len, d_model]` is the
    /// src and receives out.
    pub fn forward_in_place(
        &self,
        ctx: &mut Context,
        batch: i64,
        len: i64,
        x: &mut [f32],
        mask: Option<&Mask<'_>>,
    ) -> Result<()> {
        extent("EncoderLayer::forward_in_place", "x", x.len(), &[batch, len, self.d_model])?;
        let p = x.as_mut_ptr();
        // SAFETY: length checked; libattn allows out == src.
        unsafe { self.call_forward(ctx, batch, len, p, mask, p, ptr::null_mut()) }
    }

    /// The training forward (`attn_encoder_layer_forward` with act): dropout
    /// as set, and `act` keeps what [`EncoderLayer::backward`] needs. The
    /// returned [`Tape`] borrows `act` and `mask` until then.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train<'t>(
        &self,
        ctx: &mut Context,
        batch: i64,
        len: i64,
        src: &[f32],
        mask: Option<&'t Mask<'t>>,
        out: &mut [f32],
        act: &'t mut Activations,
    ) -> Result<Tape<'t>> {
        const F: &str = "EncoderLayer::forward_train";
        extent(F, "src", src.len(), &[batch, len, self.d_model])?;
        extent(F, "out", out.len(), &[batch, len, self.d_model])?;
        // SAFETY: lengths checked above; act and mask are borrowed by the tape.
        unsafe {
            self.call_forward(ctx, batch, len, src.as_ptr(), mask, out.as_mut_ptr(), act.raw_mut())
        }?;
        Ok(Tape::new(act, Filler::Encoder, batch, len, len, self.d_model))
    }

    /// `attn_encoder_layer_backward`: given d_out `[batch, len, d_model]`,
    /// writes d_src `[batch, len, d_model]` and d_params `[param_count]`
    /// (the layout of [`EncoderLayer::get_params`]); each `None` = not
    /// computed, else overwritten.
    pub fn backward(
        &self,
        ctx: &mut Context,
        tape: &Tape<'_>,
        d_out: &[f32],
        d_src: Option<&mut [f32]>,
        d_params: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "EncoderLayer::backward";
        tape.expect(F, Filler::Encoder)?;
        let shape = [tape.batch, tape.len_q, self.d_model];
        extent(F, "d_out", d_out.len(), &shape)?;
        let ds = opt_out(F, "d_src", d_src, &shape)?;
        let dp = opt_out(F, "d_params", d_params, &[self.n_params])?;
        // SAFETY: lengths checked above; outputs are distinct &mut borrows.
        check(unsafe {
            sys::attn_encoder_layer_backward(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                tape.raw(),
                d_out.as_ptr(),
                ds,
                dp,
            )
        })
    }

    /// `attn_encoder_layer_forward_cached`: the layer's step with a cache
    /// (one cache per layer, made with heads_kv = nhead and dims d_model /
    /// nhead), for a causal layer decoding token by token or chunk by chunk:
    /// src `[total_q, d_model]` holds the new tokens of `seqs.len()`
    /// sequences (rows as `cu_q` says, see
    /// [`Sdpa::forward_cached`](crate::Sdpa::forward_cached)); out
    /// `[total_q, d_model]`. The result equals one causal forward over the
    /// whole sequence to float32 rounding.
    pub fn forward_cached(
        &self,
        ctx: &mut Context,
        cache: &mut KvCache,
        seqs: &[i64],
        cu_q: &[i64],
        src: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        const F: &str = "EncoderLayer::forward_cached";
        let total_q = total_rows(F, seqs, cu_q)?;
        extent(F, "src", src.len(), &[total_q, self.d_model])?;
        extent(F, "out", out.len(), &[total_q, self.d_model])?;
        // SAFETY: lengths checked above; the cache is borrowed mutably.
        check(unsafe {
            sys::attn_encoder_layer_forward_cached(
                ctx.raw.as_ptr(),
                self.raw.as_ptr(),
                cache.raw.as_ptr(),
                len64(seqs),
                seqs.as_ptr(),
                cu_q.as_ptr(),
                src.as_ptr(),
                out.as_mut_ptr(),
            )
        })
    }
}

impl Drop for EncoderLayer {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_encoder_layer_destroy(self.raw.as_ptr()) }
    }
}

fn check_norm(func: &str, rows: i64, features: i64, x: &[f32], weight: &[f32]) -> Result<()> {
    extent(func, "x", x.len(), &[rows, features])?;
    extent(func, "weight", weight.len(), &[features])
}

/// `attn_layer_norm` (torch.nn.LayerNorm over the last dimension): for each
/// row of x `[rows, features]`, y = (x − mean)/sqrt(var + eps)·weight + bias
/// with the biased variance; weight, bias `[features]`; y `[rows,
/// features]`. Sums in double; runs on the calling thread. Thread-safe.
pub fn layer_norm(
    rows: i64,
    features: i64,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    y: &mut [f32],
) -> Result<()> {
    const F: &str = "layer_norm";
    check_norm(F, rows, features, x, weight)?;
    extent(F, "bias", bias.len(), &[features])?;
    extent(F, "y", y.len(), &[rows, features])?;
    // SAFETY: lengths checked above; y is a distinct &mut borrow.
    check(unsafe {
        sys::attn_layer_norm(
            rows,
            features,
            x.as_ptr(),
            weight.as_ptr(),
            bias.as_ptr(),
            eps,
            y.as_mut_ptr(),
        )
    })
}

/// [`layer_norm`] in place: x `[rows, features]` receives y.
pub fn layer_norm_in_place(
    rows: i64,
    features: i64,
    x: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Result<()> {
    const F: &str = "layer_norm_in_place";
    check_norm(F, rows, features, x, weight)?;
    extent(F, "bias", bias.len(), &[features])?;
    let p = x.as_mut_ptr();
    // SAFETY: lengths checked above; libattn allows y == x.
    check(unsafe {
        sys::attn_layer_norm(rows, features, p, weight.as_ptr(), bias.as_ptr(), eps, p)
    })
}

/// `attn_layer_norm_backward`: for the same x `[rows, features]`, weight
/// and eps, given d_y `[rows, features]`, writes d_x `[rows, features]`,
/// d_weight and d_bias `[features]`; each `None` = not computed, else
/// overwritten. Sums in double, in row order: the same bits every call.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    rows: i64,
    features: i64,
    x: &[f32],
    weight: &[f32],
    eps: f32,
    d_y: &[f32],
    d_x: Option<&mut [f32]>,
    d_weight: Option<&mut [f32]>,
    d_bias: Option<&mut [f32]>,
) -> Result<()> {
    const F: &str = "layer_norm_backward";
    check_norm(F, rows, features, x, weight)?;
    extent(F, "d_y", d_y.len(), &[rows, features])?;
    let dx = opt_out(F, "d_x", d_x, &[rows, features])?;
    let dw = opt_out(F, "d_weight", d_weight, &[features])?;
    let db = opt_out(F, "d_bias", d_bias, &[features])?;
    // SAFETY: lengths checked above; outputs are distinct &mut borrows.
    check(unsafe {
        sys::attn_layer_norm_backward(
            rows,
            features,
            x.as_ptr(),
            weight.as_ptr(),
            eps,
            d_y.as_ptr(),
            dx,
            dw,
            db,
        )
    })
}
