//! The execution context and the masks (`attn.h`'s basics and masks).

use crate::{check, create, extent, sys, Result};
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::{self, NonNull};

/// Worker threads and scratch memory (`attn_context`), reused from call to
/// call. Calls take it by `&mut`, so one thread at a time uses it; it may
/// move between threads (`Send`), as attn.h allows. Threads and scratch are
/// made by the first call that needs them, so creation is cheap.
#[derive(Debug)]
pub struct Context {
    pub(crate) raw: NonNull<sys::attn_context>,
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

    /// A context whose calls use `n` threads (0: the default).
    pub fn with_threads(n: i32) -> Result<Context> {
        let mut ctx = Context::new()?;
        ctx.set_num_threads(n)?;
        Ok(ctx)
    }

    /// `attn_context_set_num_threads`: `n` threads, the calling one included
    /// (0: libattn's choice from how the BLAS runs; 1..=1024).
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
        // SAFETY: a live handle, destroyed once; no call can be running
        // (they borrow the context).
        unsafe { sys::attn_context_destroy(self.raw.as_ptr()) }
    }
}

/// A mask (`attn_mask`) that borrows its arrays for `'a`: libattn keeps
/// pointers to them, copying nothing, so the borrow checker keeps them
/// alive and unchanged while the mask exists. It holds at most one array of
/// each kind (valid lengths, boolean keep-mask, additive bias); the kinds
/// combine, and setting a kind again replaces it. Shapes are checked
/// against the op at each forward call (an [`Error`](crate::Error) with
/// [`Status::SHAPE_MISMATCH`](crate::Status::SHAPE_MISMATCH) if they do not
/// fit). A mask is read-only during calls, which take it by `&`: it may
/// serve several ops and threads at once (`Sync`).
///
/// ```
/// let lengths = [2i64, 3]; // D2L's valid_lens of a batch of 2
/// let mut mask = attn::Mask::new()?;
/// mask.set_kv_lengths(&lengths, 2)?;
/// # Ok::<(), attn::Error>(())
/// ```
///
/// An array that does not outlive the mask is refused at compile time:
///
/// ```compile_fail
/// let mut mask = attn::Mask::new()?;
/// {
///     let lengths = vec![2i64, 3];
///     mask.set_kv_lengths(&lengths, 2)?;
/// } // lengths is freed here, while the mask still points to it
/// drop(mask);
/// # Ok::<(), attn::Error>(())
/// ```
#[derive(Debug)]
pub struct Mask<'a> {
    raw: NonNull<sys::attn_mask>,
    _arrays: PhantomData<&'a ()>,
}

// SAFETY: a mask is only read by forward calls, and changed only through
// &mut self; the arrays it points to are shared borrows (&'a [T] of Sync T).
unsafe impl Send for Mask<'_> {}
unsafe impl Sync for Mask<'_> {}

impl<'a> Mask<'a> {
    /// An empty mask (`attn_mask_create`): nothing masked.
    pub fn new() -> Result<Mask<'a>> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe { sys::attn_mask_create(p) })?;
        Ok(Mask { raw, _arrays: PhantomData })
    }

    /// Valid lengths per batch row: `lengths.len() == batch`; keys at
    /// positions >= the row's length are masked and never read (D2L
    /// §10.3.1's `valid_lens`; `attn_mask_set_kv_lengths`, per_query = 0).
    /// Each length must be in `[0, len_kv]` of the op (checked at forward);
    /// 0 gives that row zeros.
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

    /// Boolean keep-mask `[mb, mh, mq, len_kv]`, non-zero = attend (as
    /// PyTorch's SDPA; its nn.MultiheadAttention masks mean the opposite);
    /// mb ∈ {1, batch}, mh ∈ {1, heads_q}, mq ∈ {1, len_q} broadcast
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

    /// Additive bias `[mb, mh, mq, len_kv]` added to the scaled logits
    /// (-inf masks a key), broadcast as [`Mask::set_bool`]
    /// (`attn_mask_set_bias`).
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

/// The C pointer of an optional mask (NULL: none).
pub(crate) fn mask_ptr(mask: Option<&Mask<'_>>) -> *const sys::attn_mask {
    mask.map_or(ptr::null(), |m| m.raw.as_ptr() as *const sys::attn_mask)
}
