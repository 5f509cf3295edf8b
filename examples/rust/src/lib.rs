//! Safe Rust bindings to libattn, the C attention library (`attn.h`).
//!
//! Every handle is owned by a value that destroys it on `Drop`
//! ([`Context`], [`Mask`], [`Sdpa`], [`Mha`], [`Additive`]); every call that
//! can fail returns [`Result`], whose [`Error`] carries libattn's status and
//! its `attn_last_error()` message. Tensors are slices of `f32` in row-major
//! order; their lengths are checked against the shapes before libattn sees
//! them, so a short slice is an [`Error`] with [`Status::SHAPE_MISMATCH`],
//! never a read past its end. A [`Mask`] borrows the arrays it references
//! for its whole life, so the borrow checker enforces attn.h's rule that
//! they outlive the forward calls that use the mask.
//!
//! The UvA deep-learning tutorial 6 example:
//!
//! ```
//! let q = [0.3367f32, 0.1288, 0.2345, 0.2303, -1.1229, -0.1863];
//! let k = [2.2082f32, -0.6380, 0.4617, 0.2674, 0.5349, 0.8094];
//! let v = [1.1103f32, -1.6898, -0.9890, 0.9580, 1.3221, 0.8172];
//! let mut ctx = attn::Context::new()?;
//! // batch 1, 1 query head, 1 key/value head, len_q 3, len_kv 3, dim_qk 2, dim_v 2
//! let op = attn::Sdpa::new(1, 1, 1, 3, 3, 2, 2)?;
//! let out = op.run(&mut ctx, &q, &k, &v, None)?;
//! println!("{:.4} {:.4}", out[0], out[1]); // 0.5697 -0.1520
//! # Ok::<(), attn::Error>(())
//! ```
//!
//! The library is linked with the flags of `pkg-config --libs attn` (see
//! `build.rs`).

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::{self, NonNull};

pub mod sys;

/// A libattn status code (`attn_status`). Any `i32` is representable, so a
/// status added by a newer library is carried, not lost.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    /// Success.
    pub const OK: Status = Status(sys::ATTN_OK);
    /// A required pointer is NULL.
    pub const NULL_POINTER: Status = Status(sys::ATTN_ERR_NULL_POINTER);
    /// A value outside its domain.
    pub const INVALID_ARGUMENT: Status = Status(sys::ATTN_ERR_INVALID_ARGUMENT);
    /// Sizes valid alone but inconsistent together (also: a slice whose
    /// length does not match its shape).
    pub const SHAPE_MISMATCH: Status = Status(sys::ATTN_ERR_SHAPE_MISMATCH);
    /// A buffer's byte count does not fit in `size_t`.
    pub const SIZE_OVERFLOW: Status = Status(sys::ATTN_ERR_SIZE_OVERFLOW);
    /// An allocation or a thread creation failed.
    pub const OUT_OF_MEMORY: Status = Status(sys::ATTN_ERR_OUT_OF_MEMORY);
    /// A valid request this build does not implement.
    pub const UNSUPPORTED: Status = Status(sys::ATTN_ERR_UNSUPPORTED);
    /// Object not fully configured (e.g. weights not set).
    pub const STATE: Status = Status(sys::ATTN_ERR_STATE);
    /// A message passing call failed (libattn-mpi's MPI).
    pub const COMMUNICATION: Status = Status(sys::ATTN_ERR_COMMUNICATION);

    /// libattn's description, `attn_status_string`
    /// (e.g. "ATTN_ERR_SHAPE_MISMATCH: sizes inconsistent together").
    pub fn description(self) -> &'static str {
        // SAFETY: attn_status_string returns a static string for any value.
        unsafe { static_str(sys::attn_status_string(self.0)) }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({}: {})", self.0, self.description())
    }
}

/// Memory layout of q, k, v and out (`attn_layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout(pub i32);

impl Layout {
    /// `[batch, heads, seq, dim]` (the default).
    pub const BHSD: Layout = Layout(sys::ATTN_LAYOUT_BHSD);
    /// `[batch, seq, heads, dim]`.
    pub const BSHD: Layout = Layout(sys::ATTN_LAYOUT_BSHD);
}

/// Which keys a query may see by position (`attn_causal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Causal(pub i32);

impl Causal {
    /// No positional restriction (the default).
    pub const NONE: Causal = Causal(sys::ATTN_CAUSAL_NONE);
    /// Query i sees keys j <= i (PyTorch `is_causal`).
    pub const TOP_LEFT: Causal = Causal(sys::ATTN_CAUSAL_TOP_LEFT);
    /// Query i sees keys j <= i + len_kv - len_q (decoding with a KV cache).
    pub const BOTTOM_RIGHT: Causal = Causal(sys::ATTN_CAUSAL_BOTTOM_RIGHT);
}

/// Which projection of a [`Mha`] layer (`attn_proj`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proj(pub i32);

impl Proj {
    /// Query projection: weight `[embed_dim, embed_dim]`.
    pub const Q: Proj = Proj(sys::ATTN_PROJ_Q);
    /// Key projection: weight `[num_kv_heads·head_dim, kdim]`.
    pub const K: Proj = Proj(sys::ATTN_PROJ_K);
    /// Value projection: weight `[num_kv_heads·head_dim, vdim]`.
    pub const V: Proj = Proj(sys::ATTN_PROJ_V);
    /// Output projection: weight `[embed_dim, embed_dim]`.
    pub const O: Proj = Proj(sys::ATTN_PROJ_O);
}

/// A failed call: libattn's status and message, or the wrapper's own
/// length check (status [`Status::SHAPE_MISMATCH`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// The status of the failed call.
    pub fn status(&self) -> Status {
        self.status
    }

    /// What was wrong, naming the function and the argument, e.g.
    /// "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)".
    pub fn message(&self) -> &str {
        &self.message
    }

    fn shape(func: &str, name: &str, got: usize, want: usize) -> Error {
        Error {
            status: Status::SHAPE_MISMATCH,
            message: format!("{}: {} has {} elements, the shapes need {}", func, name, got, want),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status.description())
    }
}

impl std::error::Error for Error {}

/// The result of every fallible call.
pub type Result<T> = std::result::Result<T, Error>;

/// SAFETY: `s` is a NUL-terminated string that lives forever.
unsafe fn static_str(s: *const c_char) -> &'static str {
    CStr::from_ptr(s).to_str().unwrap_or("(not UTF-8)")
}

/// Turns a status into a Result, reading attn_last_error() of this thread
/// right after the failed call.
fn check(status: sys::attn_status) -> Result<()> {
    if status == sys::ATTN_OK {
        return Ok(());
    }
    // SAFETY: attn_last_error never returns NULL; the string is valid until
    // this thread's next failing call, and is copied here.
    let message = unsafe { CStr::from_ptr(sys::attn_last_error()) }.to_string_lossy().into_owned();
    Err(Error { status: Status(status), message })
}

/// The product of sizes as a slice length, or None when a size is negative
/// or the product overflows: libattn then rejects the sizes itself without
/// reading any array.
fn count(sizes: &[i64]) -> Option<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| usize::try_from(s).ok().and_then(|s| acc.checked_mul(s)))
}

/// Checks a required slice against its shape.
fn extent(func: &str, name: &str, len: usize, sizes: &[i64]) -> Result<()> {
    match count(sizes) {
        Some(want) if want != len => Err(Error::shape(func, name, len, want)),
        _ => Ok(()),
    }
}

/// An optional output: checked if present, NULL if absent.
fn opt_out(func: &str, name: &str, s: Option<&mut [f32]>, sizes: &[i64]) -> Result<*mut f32> {
    match s {
        None => Ok(ptr::null_mut()),
        Some(s) => {
            extent(func, name, s.len(), sizes)?;
            Ok(s.as_mut_ptr())
        }
    }
}

fn mask_ptr(mask: Option<&Mask<'_>>) -> *const sys::attn_mask {
    mask.map_or(ptr::null(), |m| m.raw.as_ptr() as *const sys::attn_mask)
}

/// Creates a handle with `create`, which returns a status and sets its
/// out-pointer.
fn create<T>(create: impl FnOnce(*mut *mut T) -> sys::attn_status) -> Result<NonNull<T>> {
    let mut raw: *mut T = ptr::null_mut();
    check(create(&mut raw))?;
    Ok(NonNull::new(raw).expect("libattn returned ATTN_OK and a NULL handle"))
}

/// The runtime library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: a static string, never NULL.
    unsafe { static_str(sys::attn_version_string()) }
}

/// The runtime library's version as MAJOR·10000 + MINOR·100 + PATCH.
pub fn version_number() -> u32 {
    // SAFETY: no arguments, never fails.
    unsafe { sys::attn_version_number() }
}

/// Worker threads and scratch memory (`attn_context`). Forward calls take
/// it by `&mut`, so one thread at a time uses it; it may move between
/// threads (`Send`), as attn.h allows.
pub struct Context {
    raw: NonNull<sys::attn_context>,
}

// SAFETY: attn.h: "the same context may be handed from one thread to
// another between calls". It is not Sync: calls need &mut.
unsafe impl Send for Context {}

impl Context {
    /// A context with the default thread count (`attn_context_create`).
    pub fn new() -> Result<Context> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_context_create(p) })?;
        Ok(Context { raw })
    }

    /// A context whose forward calls use `n` threads (0: the default).
    pub fn with_threads(n: i32) -> Result<Context> {
        let mut ctx = Context::new()?;
        ctx.set_num_threads(n)?;
        Ok(ctx)
    }

    /// `attn_context_set_num_threads`.
    pub fn set_num_threads(&mut self, n: i32) -> Result<()> {
        // SAFETY: a live handle, used by this thread only (&mut).
        check(unsafe { sys::attn_context_set_num_threads(self.raw.as_ptr(), n as c_int) })
    }

    /// The C handle, still owned by this value.
    pub fn as_ptr(&self) -> *mut sys::attn_context {
        self.raw.as_ptr()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once; no forward call can be
        // running (they borrow the context).
        unsafe { sys::attn_context_destroy(self.raw.as_ptr()) }
    }
}

/// A mask (`attn_mask`) that borrows its arrays for `'a`: libattn keeps
/// pointers to them, so the borrow checker keeps them alive and unchanged
/// while the mask exists.
pub struct Mask<'a> {
    raw: NonNull<sys::attn_mask>,
    _arrays: PhantomData<&'a ()>,
}

// SAFETY: a mask is only read by forward calls, and changed only through
// &mut self; the arrays it points to are shared borrows (&'a [T] of Sync T).
unsafe impl Send for Mask<'_> {}
unsafe impl Sync for Mask<'_> {}

impl<'a> Mask<'a> {
    /// An empty mask (`attn_mask_create`).
    pub fn new() -> Result<Mask<'a>> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_mask_create(p) })?;
        Ok(Mask { raw, _arrays: PhantomData })
    }

    /// Valid lengths per batch row: `lengths.len() == batch`
    /// (`attn_mask_set_kv_lengths`, per_query = 0).
    pub fn set_kv_lengths(&mut self, lengths: &'a [i64], batch: i64) -> Result<&mut Self> {
        extent("Mask::set_kv_lengths", "lengths", lengths.len(), &[batch])?;
        // SAFETY: lengths holds `batch` values and outlives the mask ('a).
        check(unsafe {
            sys::attn_mask_set_kv_lengths(self.raw.as_ptr(), lengths.as_ptr(), batch, 0, 0)
        })?;
        Ok(self)
    }

    /// Valid lengths per query, `[batch, len_q]`
    /// (`attn_mask_set_kv_lengths`, per_query = 1).
    pub fn set_kv_lengths_per_query(
        &mut self,
        lengths: &'a [i64],
        batch: i64,
        len_q: i64,
    ) -> Result<&mut Self> {
        extent("Mask::set_kv_lengths_per_query", "lengths", lengths.len(), &[batch, len_q])?;
        // SAFETY: lengths holds batch·len_q values and outlives the mask.
        check(unsafe {
            sys::attn_mask_set_kv_lengths(self.raw.as_ptr(), lengths.as_ptr(), batch, len_q, 1)
        })?;
        Ok(self)
    }

    /// Boolean keep-mask `[mb, mh, mq, len_kv]`, non-zero = attend
    /// (`attn_mask_set_bool`).
    pub fn set_bool(
        &mut self,
        keep: &'a [u8],
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> Result<&mut Self> {
        extent("Mask::set_bool", "keep", keep.len(), &[mb, mh, mq, len_kv])?;
        // SAFETY: keep holds the product of the sizes and outlives the mask.
        check(unsafe {
            sys::attn_mask_set_bool(self.raw.as_ptr(), keep.as_ptr(), mb, mh, mq, len_kv)
        })?;
        Ok(self)
    }

    /// Additive bias `[mb, mh, mq, len_kv]` (`attn_mask_set_bias`).
    pub fn set_bias(
        &mut self,
        bias: &'a [f32],
        mb: i64,
        mh: i64,
        mq: i64,
        len_kv: i64,
    ) -> Result<&mut Self> {
        extent("Mask::set_bias", "bias", bias.len(), &[mb, mh, mq, len_kv])?;
        // SAFETY: bias holds the product of the sizes and outlives the mask.
        check(unsafe {
            sys::attn_mask_set_bias(self.raw.as_ptr(), bias.as_ptr(), mb, mh, mq, len_kv)
        })?;
        Ok(self)
    }

    /// Removes every kind (`attn_mask_clear`).
    pub fn clear(&mut self) -> Result<&mut Self> {
        // SAFETY: a live handle.
        check(unsafe { sys::attn_mask_clear(self.raw.as_ptr()) })?;
        Ok(self)
    }
}

impl Drop for Mask<'_> {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_mask_destroy(self.raw.as_ptr()) }
    }
}

/// Scaled dot-product attention for fixed shapes (`attn_sdpa`). Forward
/// calls take `&self`: one op may serve several threads (`Sync`), each with
/// its own [`Context`].
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

// SAFETY: attn.h: ops are immutable during forward and may be shared by
// threads; the setters take &mut self.
unsafe impl Send for Sdpa {}
unsafe impl Sync for Sdpa {}

impl Sdpa {
    /// `attn_sdpa_create`: q `[batch, heads_q, len_q, dim_qk]`,
    /// k `[batch, heads_kv, len_kv, dim_qk]`, v `[batch, heads_kv, len_kv, dim_v]`.
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

    /// `attn_sdpa_set_scale`.
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

    /// Elements of `out`: batch·heads_q·len_q·dim_v.
    pub fn out_len(&self) -> usize {
        count(&[self.batch, self.heads_q, self.len_q, self.dim_v]).unwrap_or(0)
    }

    /// Elements of `weights`: batch·heads_q·len_q·len_kv.
    pub fn weights_len(&self) -> usize {
        count(&[self.batch, self.heads_q, self.len_q, self.len_kv]).unwrap_or(0)
    }

    /// Elements of `lse`: batch·heads_q·len_q.
    pub fn lse_len(&self) -> usize {
        count(&[self.batch, self.heads_q, self.len_q]).unwrap_or(0)
    }

    /// `attn_sdpa_forward`. Every slice must have exactly the length of its
    /// shape; `weights` and `lse` are optional outputs.
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
        let (b, hq, hkv) = (self.batch, self.heads_q, self.heads_kv);
        extent(F, "q", q.len(), &[b, hq, self.len_q, self.dim_qk])?;
        extent(F, "k", k.len(), &[b, hkv, self.len_kv, self.dim_qk])?;
        extent(F, "v", v.len(), &[b, hkv, self.len_kv, self.dim_v])?;
        extent(F, "out", out.len(), &[b, hq, self.len_q, self.dim_v])?;
        let w = opt_out(F, "weights", weights, &[b, hq, self.len_q, self.len_kv])?;
        let l = opt_out(F, "lse", lse, &[b, hq, self.len_q])?;
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
}

impl Drop for Sdpa {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_sdpa_destroy(self.raw.as_ptr()) }
    }
}

/// A multi-head attention layer with PyTorch's numbers (`attn_mha`).
pub struct Mha {
    raw: NonNull<sys::attn_mha>,
    embed_dim: i64,
    num_heads: i64,
    kv_dim: i64,
    kdim: i64,
    vdim: i64,
    bias: bool,
}

// SAFETY: as for Sdpa.
unsafe impl Send for Mha {}
unsafe impl Sync for Mha {}

impl Mha {
    /// `attn_mha_create`.
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
        Ok(Mha { raw, embed_dim, num_heads, kv_dim, kdim, vdim, bias })
    }

    /// `attn_mha_set_weights`: weight `[out_features, in_features]`, bias
    /// `[out_features]` (`None` on a layer made without biases).
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
        // copied. An invalid `which` is rejected before anything is read.
        check(unsafe {
            sys::attn_mha_set_weights(self.raw.as_ptr(), which.0, weight.as_ptr(), b)
        })?;
        Ok(self)
    }

    /// `attn_mha_set_causal`.
    pub fn set_causal(&mut self, causal: Causal) -> Result<&mut Self> {
        // SAFETY: a live handle, not in use (&mut).
        check(unsafe { sys::attn_mha_set_causal(self.raw.as_ptr(), causal.0) })?;
        Ok(self)
    }

    /// `attn_mha_forward`: query `[batch, len_q, embed_dim]`, key
    /// `[batch, len_kv, kdim]`, value `[batch, len_kv, vdim]`, out
    /// `[batch, len_q, embed_dim]`, weights `[batch, num_heads, len_q, len_kv]`.
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
        extent(F, "query", query.len(), &[batch, len_q, self.embed_dim])?;
        extent(F, "key", key.len(), &[batch, len_kv, self.kdim])?;
        extent(F, "value", value.len(), &[batch, len_kv, self.vdim])?;
        extent(F, "out", out.len(), &[batch, len_q, self.embed_dim])?;
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
}

impl Drop for Mha {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_mha_destroy(self.raw.as_ptr()) }
    }
}

/// Additive (Bahdanau) attention (`attn_additive`).
pub struct Additive {
    raw: NonNull<sys::attn_additive>,
    query_dim: i64,
    key_dim: i64,
    hidden: i64,
}

// SAFETY: as for Sdpa.
unsafe impl Send for Additive {}
unsafe impl Sync for Additive {}

impl Additive {
    /// `attn_additive_create`.
    pub fn new(query_dim: i64, key_dim: i64, hidden: i64) -> Result<Additive> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_additive_create(p, query_dim, key_dim, hidden) })?;
        Ok(Additive { raw, query_dim, key_dim, hidden })
    }

    /// `attn_additive_set_weights`: w_q `[hidden, query_dim]`, w_k
    /// `[hidden, key_dim]`, w_v `[hidden]` (copied).
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

    /// `attn_additive_forward`: queries `[batch, len_q, query_dim]`, keys
    /// `[batch, len_kv, key_dim]`, values `[batch, len_kv, dim_v]`, out
    /// `[batch, len_q, dim_v]`, weights `[batch, len_q, len_kv]`.
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
        extent(F, "queries", queries.len(), &[batch, len_q, self.query_dim])?;
        extent(F, "keys", keys.len(), &[batch, len_kv, self.key_dim])?;
        extent(F, "values", values.len(), &[batch, len_kv, dim_v])?;
        extent(F, "out", out.len(), &[batch, len_q, dim_v])?;
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
}

impl Drop for Additive {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once.
        unsafe { sys::attn_additive_destroy(self.raw.as_ptr()) }
    }
}

/// `attn_nadaraya_watson`: `out[i] = Σ_j softmax_j(−((x_i − x_j)·w)²/2) · y_j`
/// over scalar queries and keys; weights `[n_queries, n_keys]` if wanted.
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
    // A slice holds at most isize::MAX elements, which fits in i64.
    let (nq, nk) = (queries.len() as i64, keys.len() as i64);
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

/// `attn_positional_encoding`: the `[len, dim]` sinusoidal encoding of
/// positions `start .. start + len`.
pub fn positional_encoding(len: i64, dim: i64, start: i64, base: f32) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; count(&[len, dim]).unwrap_or(0)];
    let p = if out.is_empty() { ptr::null_mut() } else { out.as_mut_ptr() };
    // SAFETY: out holds len·dim floats when the sizes are valid; otherwise
    // libattn rejects them before writing.
    check(unsafe { sys::attn_positional_encoding(p, len, dim, start, base) })?;
    Ok(out)
}
