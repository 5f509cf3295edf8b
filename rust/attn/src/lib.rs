//! Safe Rust bindings to libattn, the C attention library (`attn.h`), on top
//! of the raw declarations of [`attn_sys`] (re-exported as [`sys`]).
//!
//! Every handle is owned by a value that destroys it on `Drop`: [`Context`],
//! [`Mask`], [`Sdpa`], [`Mha`], [`Additive`], [`Activations`],
//! [`EncoderLayer`], [`Rope`] and [`KvCache`]. Every call that can fail
//! returns [`Result`], whose [`Error`] carries libattn's status and its
//! `attn_last_error()` message.
//!
//! Tensors are slices of `f32` in row-major order, shapes written outermost
//! first: `[B, H, S, D]` means element `(b, h, s, d)` is at
//! `((b·H + h)·S + s)·D + d`. Every slice's length is checked against its
//! shape before libattn sees it, so a short or long slice is an [`Error`]
//! with [`Status::SHAPE_MISMATCH`] and a message naming the function and
//! the tensor, never a read past its end; outputs are then untouched.
//! Optional outputs are `Option<&mut [f32]>`: `None` is not computed.
//! Because outputs are `&mut` borrows, they can overlap no input and no
//! other output; where libattn gives aliasing a meaning (in-place layer
//! norm, the self-attention gradient sum), a method of its own does it.
//!
//! Lifetimes follow what libattn keeps. A [`Mask`] references its arrays
//! without copying, so it borrows them; a training forward keeps a pointer
//! to its mask until the backward, so the [`Tape`] it returns borrows the
//! mask and the [`Activations`]. Everything else (weights, parameters, ALiBi
//! slopes, RoPE frequencies and tables, a rope given to a layer, the keys
//! and values appended to a cache) is copied by the call.
//!
//! Threads: a [`Context`] is one thread's at a time (`Send`, not `Sync`;
//! calls take it by `&mut`). Ops, layers, masks, ropes and activations are
//! `Send + Sync`: forward and backward calls take them by `&` and may run on
//! several threads at once, each with its own context; setters take
//! `&mut self`, so they cannot run meanwhile. A [`KvCache`] is read by `&`
//! ([`KvCache::seq_len`], [`KvCache::read`], [`Sdpa::forward_cached`]) and
//! changed by `&mut`.
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
//! Calls added in libattn 1.1 (gradients, encoder layer, score modifiers,
//! RoPE, the KV cache) need a 1.1 library at run time; [`version_number`]
//! says which one is loaded. The library is linked by attn-sys with the
//! flags of `pkg-config --libs attn`.

#![warn(missing_docs)]

use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_char;
use std::ptr::{self, NonNull};

pub use attn_sys as sys;

mod additive;
mod context;
mod decoding;
mod encoder;
mod mha;
mod positional;
mod sdpa;
mod training;

pub use additive::Additive;
pub use context::{Context, Mask};
pub use decoding::{merge_partials, KvCache};
pub use encoder::{layer_norm, layer_norm_backward, layer_norm_in_place, EncoderLayer};
pub use mha::Mha;
pub use positional::{positional_encoding, Rope};
pub use sdpa::Sdpa;
pub use training::{nadaraya_watson, nadaraya_watson_backward, Activations, Tape};

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
    /// Object not fully configured (weights not set), or activations that
    /// do not belong to the layer or are stale.
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
    /// `[batch, seq, heads, dim]`, i.e. `[B, S, H·D]`: the output of a
    /// projection, read in place.
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

/// What [`Mha::property`] reads (`attn_mha_property`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MhaProperty(pub i32);

impl MhaProperty {
    /// embed_dim, as created.
    pub const EMBED_DIM: MhaProperty = MhaProperty(sys::ATTN_MHA_EMBED_DIM);
    /// num_heads (query heads).
    pub const NUM_HEADS: MhaProperty = MhaProperty(sys::ATTN_MHA_NUM_HEADS);
    /// num_kv_heads (key/value heads).
    pub const NUM_KV_HEADS: MhaProperty = MhaProperty(sys::ATTN_MHA_NUM_KV_HEADS);
    /// head_dim = embed_dim / num_heads.
    pub const HEAD_DIM: MhaProperty = MhaProperty(sys::ATTN_MHA_HEAD_DIM);
    /// kdim: the features of a key row.
    pub const KDIM: MhaProperty = MhaProperty(sys::ATTN_MHA_KDIM);
    /// vdim: the features of a value row.
    pub const VDIM: MhaProperty = MhaProperty(sys::ATTN_MHA_VDIM);
    /// 1 if the projections have biases, else 0.
    pub const BIAS: MhaProperty = MhaProperty(sys::ATTN_MHA_BIAS);
    /// The [`Causal`] value set.
    pub const CAUSAL: MhaProperty = MhaProperty(sys::ATTN_MHA_CAUSAL);
    /// 1 if a window, softcap or ALiBi is set.
    pub const HAS_MODIFIERS: MhaProperty = MhaProperty(sys::ATTN_MHA_HAS_MODIFIERS);
    /// 1 if [`Mha::set_rope`] gave the layer a rope.
    pub const HAS_ROPE: MhaProperty = MhaProperty(sys::ATTN_MHA_HAS_ROPE);
    /// 1 if [`Mha::set_dropout`] set p > 0.
    pub const HAS_DROPOUT: MhaProperty = MhaProperty(sys::ATTN_MHA_HAS_DROPOUT);
}

/// The feed-forward activation of an [`EncoderLayer`] (`attn_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Activation(pub i32);

impl Activation {
    /// max(x, 0), PyTorch's "relu" (its default).
    pub const RELU: Activation = Activation(sys::ATTN_ACTIVATION_RELU);
    /// x·Φ(x) with the exact erf, PyTorch's "gelu" (not the tanh form).
    pub const GELU: Activation = Activation(sys::ATTN_ACTIVATION_GELU);
}

/// The pairing of the features a [`Rope`] rotates (`attn_rope_style`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RopeStyle(pub i32);

impl RopeStyle {
    /// Pairs (x\[i\], x\[i + rotary_dim/2\]): GPT-NeoX, Llama, HF rotate_half.
    pub const HALF: RopeStyle = RopeStyle(sys::ATTN_ROPE_HALF);
    /// Pairs (x\[2i\], x\[2i + 1\]): GPT-J, Meta's complex form.
    pub const INTERLEAVED: RopeStyle = RopeStyle(sys::ATTN_ROPE_INTERLEAVED);
}

/// A failed call: libattn's status and message, or the wrapper's own check
/// (status [`Status::SHAPE_MISMATCH`] for a slice of the wrong length,
/// [`Status::STATE`] for a [`Tape`] of another kind of layer).
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

    pub(crate) fn new(status: Status, func: &str, what: String) -> Error {
        Error { status, message: format!("{}: {}", func, what) }
    }

    fn shape(func: &str, name: &str, got: usize, want: usize) -> Error {
        let what = format!("{} has {} elements, the shapes need {}", name, got, want);
        Error::new(Status::SHAPE_MISMATCH, func, what)
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
pub(crate) fn check(status: sys::attn_status) -> Result<()> {
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
pub(crate) fn count(sizes: &[i64]) -> Option<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| usize::try_from(s).ok().and_then(|s| acc.checked_mul(s)))
}

/// Checks a required slice against its shape.
pub(crate) fn extent(func: &str, name: &str, len: usize, sizes: &[i64]) -> Result<()> {
    match count(sizes) {
        Some(want) if want != len => Err(Error::shape(func, name, len, want)),
        _ => Ok(()),
    }
}

/// An optional output: checked if present, NULL if absent.
pub(crate) fn opt_out<T>(
    func: &str,
    name: &str,
    s: Option<&mut [T]>,
    sizes: &[i64],
) -> Result<*mut T> {
    match s {
        None => Ok(ptr::null_mut()),
        Some(s) => {
            extent(func, name, s.len(), sizes)?;
            Ok(s.as_mut_ptr())
        }
    }
}

/// An optional input: checked if present, NULL if absent.
pub(crate) fn opt_in<T>(
    func: &str,
    name: &str,
    s: Option<&[T]>,
    sizes: &[i64],
) -> Result<*const T> {
    match s {
        None => Ok(ptr::null()),
        Some(s) => {
            extent(func, name, s.len(), sizes)?;
            Ok(s.as_ptr())
        }
    }
}

/// A slice length as libattn's int64_t (a slice holds at most isize::MAX
/// elements, which fits).
pub(crate) fn len64<T>(s: &[T]) -> i64 {
    s.len() as i64
}

/// Creates a handle with `create`, which returns a status and sets its
/// out-pointer.
pub(crate) fn create<T>(
    create: impl FnOnce(*mut *mut T) -> sys::attn_status,
) -> Result<NonNull<T>> {
    let mut raw: *mut T = ptr::null_mut();
    check(create(&mut raw))?;
    Ok(NonNull::new(raw).expect("libattn returned ATTN_OK and a NULL handle"))
}

/// Reads an int64_t that a call writes through its out-pointer.
pub(crate) fn read_i64(read: impl FnOnce(*mut i64) -> sys::attn_status) -> Result<i64> {
    let mut value = 0i64;
    check(read(&mut value))?;
    Ok(value)
}

/// The runtime library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: a static string, never NULL.
    unsafe { static_str(sys::attn_version_string()) }
}

/// The runtime library's version as MAJOR·10000 + MINOR·100 + PATCH (10100
/// or more for the 1.1 calls).
pub fn version_number() -> u32 {
    // SAFETY: no arguments, never fails.
    unsafe { sys::attn_version_number() }
}

/// What this process's libattn runs on (`attn_runtime_info`): one
/// "key: value" line per fact (version, blas, blas_kernel, blas_threads,
/// blas_threading, blas_copy, cpu, threads, schedule, advice), each ending
/// in '\n'; look keys up by name, more may come. Thread-safe; never changes
/// the BLAS library's settings. Needs libattn 1.1.
pub fn runtime_info() -> String {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // SAFETY: buf holds buf.len() bytes (NULL allowed with size 0); the
        // call writes at most that many, NUL included, and returns the
        // length of the whole text.
        let p = if buf.is_empty() { ptr::null_mut() } else { buf.as_mut_ptr() as *mut c_char };
        let needed = unsafe { sys::attn_runtime_info(p, buf.len()) };
        if needed < buf.len() {
            buf.truncate(needed);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf = vec![0u8; needed + 1];
    }
}
