//! Decoding: the paged KV cache and the merging of partial attention
//! results (attn_decoding.h). The cached forwards are methods of the ops:
//! [`Sdpa::forward_cached`](crate::Sdpa::forward_cached),
//! [`Mha::forward_cached`](crate::Mha::forward_cached) and
//! [`EncoderLayer::forward_cached`](crate::EncoderLayer::forward_cached).

use crate::{check, create, extent, read_i64, sys, Error, Result, Status};
use std::ptr::{self, NonNull};

/// Paged key/value storage for many sequences (`attn_kv_cache`; vLLM's
/// PagedAttention): num_pages pages of page_size tokens of heads_kv heads
/// (keys of dim_qk, values of dim_v floats), allocated once. A sequence is
/// a small non-negative id; it takes pages as it grows and gives them back
/// when closed or truncated; a fork shares its source's pages
/// (copy-on-write).
///
/// Calls that change the cache take `&mut self` (open, close, fork,
/// truncate, append, [`Mha::forward_cached`](crate::Mha::forward_cached));
/// calls that only read it take `&self` and may run at once on several
/// threads (`Sync`): [`KvCache::seq_len`], [`KvCache::read`],
/// [`Sdpa::forward_cached`](crate::Sdpa::forward_cached). The keys and
/// values appended are copied.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) raw: NonNull<sys::attn_kv_cache>,
    heads_kv: i64,
    dim_qk: i64,
    dim_v: i64,
}

// SAFETY: attn_decoding.h: changing calls must not overlap any other call
// (&mut self here), reading calls may run at once (&self).
unsafe impl Send for KvCache {}
unsafe impl Sync for KvCache {}

impl KvCache {
    /// `attn_kv_cache_create`: all sizes >= 1; num_pages × page_size ×
    /// heads_kv × (dim_qk + dim_v) floats allocated here.
    pub fn new(
        heads_kv: i64,
        dim_qk: i64,
        dim_v: i64,
        page_size: i64,
        num_pages: i64,
    ) -> Result<KvCache> {
        // SAFETY: the out-pointer is valid.
        let raw = create(|p| unsafe {
            sys::attn_kv_cache_create(p, heads_kv, dim_qk, dim_v, page_size, num_pages)
        })?;
        Ok(KvCache { raw, heads_kv, dim_qk, dim_v })
    }

    /// `attn_kv_cache_seq_open`: a new empty sequence, its id (the smallest
    /// not in use). Takes no page.
    pub fn seq_open(&mut self) -> Result<i64> {
        // SAFETY: a live handle (&mut) and a valid out-pointer.
        read_i64(|s| unsafe { sys::attn_kv_cache_seq_open(self.raw.as_ptr(), s) })
    }

    /// `attn_kv_cache_seq_close`: gives back the pages no other sequence
    /// shares; the id may be handed out again.
    pub fn seq_close(&mut self, seq: i64) -> Result<()> {
        // SAFETY: a live handle (&mut).
        check(unsafe { sys::attn_kv_cache_seq_close(self.raw.as_ptr(), seq) })
    }

    /// `attn_kv_cache_seq_fork`: a new sequence with src's tokens, sharing
    /// its pages (beam search, shared prompts); its id.
    pub fn seq_fork(&mut self, src: i64) -> Result<i64> {
        // SAFETY: a live handle (&mut) and a valid out-pointer.
        read_i64(|d| unsafe { sys::attn_kv_cache_seq_fork(self.raw.as_ptr(), src, d) })
    }

    /// `attn_kv_cache_seq_truncate`: keeps the first len tokens of seq
    /// (0 <= len <= its length; speculative decoding's rollback).
    pub fn seq_truncate(&mut self, seq: i64, len: i64) -> Result<()> {
        // SAFETY: a live handle (&mut).
        check(unsafe { sys::attn_kv_cache_seq_truncate(self.raw.as_ptr(), seq, len) })
    }

    /// `attn_kv_cache_seq_len`: the number of tokens of seq.
    pub fn seq_len(&self, seq: i64) -> Result<i64> {
        // SAFETY: a live handle, only read; a valid out-pointer.
        read_i64(|n| unsafe { sys::attn_kv_cache_seq_len(self.raw.as_ptr(), seq, n) })
    }

    /// The number of tokens k `[n, heads_kv, dim_qk]` and v `[n, heads_kv,
    /// dim_v]` hold, or an error naming `func` if they disagree.
    fn tokens(&self, func: &str, k: usize, v: usize) -> Result<i64> {
        let row = (self.heads_kv * self.dim_qk) as usize;
        if k % row != 0 {
            let what = format!("k has {} elements, not a multiple of heads_kv·dim_qk = {}", k, row);
            return Err(Error::new(Status::SHAPE_MISMATCH, func, what));
        }
        let n = (k / row) as i64;
        extent(func, "v", v, &[n, self.heads_kv, self.dim_v])?;
        Ok(n)
    }

    /// `attn_kv_cache_append`: appends n tokens to seq, k `[n, heads_kv,
    /// dim_qk]` and v `[n, heads_kv, dim_v]` (token-major, as a BSHD row of
    /// one batch; n from k's length), copied into its pages. With too few
    /// free pages: [`Status::STATE`] and nothing appended.
    pub fn append(&mut self, seq: i64, k: &[f32], v: &[f32]) -> Result<()> {
        let n = self.tokens("KvCache::append", k.len(), v.len())?;
        // SAFETY: k and v hold n tokens each (checked above); copied.
        check(unsafe {
            sys::attn_kv_cache_append(self.raw.as_ptr(), seq, n, k.as_ptr(), v.as_ptr())
        })
    }

    /// `attn_kv_cache_read`: copies tokens `[start, start + n)` of seq out,
    /// into k `[n, heads_kv, dim_qk]` and v `[n, heads_kv, dim_v]`; either
    /// may be `None` (not copied).
    pub fn read(
        &self,
        seq: i64,
        start: i64,
        n: i64,
        k: Option<&mut [f32]>,
        v: Option<&mut [f32]>,
    ) -> Result<()> {
        const F: &str = "KvCache::read";
        let kp = crate::opt_out(F, "k", k, &[n, self.heads_kv, self.dim_qk])?;
        let vp = crate::opt_out(F, "v", v, &[n, self.heads_kv, self.dim_v])?;
        // SAFETY: lengths checked above; the cache is only read.
        check(unsafe { sys::attn_kv_cache_read(self.raw.as_ptr(), seq, start, n, kp, vp) })
    }

    /// heads_kv, as created.
    pub fn heads_kv(&self) -> i64 {
        self.heads_kv
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once with its sequences.
        unsafe { sys::attn_kv_cache_destroy(self.raw.as_ptr()) }
    }
}

/// `attn_merge_partials` (flash-decoding; ring attention): the exact softmax
/// attention over the union of disjoint key sets from each part's output
/// `outs[p]` `[rows, dim_v]` and log-sum-exp `lses[p]` `[rows]`:
/// lse = log Σ_p exp(lse_p), out = Σ_p exp(lse_p − lse)·out_p, into out
/// `[rows, dim_v]` and lse `[rows]`. A part whose lse is −inf contributes
/// nothing; at least one part. Computed in double per row; thread-safe.
pub fn merge_partials(
    rows: i64,
    dim_v: i64,
    outs: &[&[f32]],
    lses: &[&[f32]],
    out: &mut [f32],
    lse: &mut [f32],
) -> Result<()> {
    const F: &str = "merge_partials";
    if outs.len() != lses.len() {
        let what = format!("{} outs but {} lses", outs.len(), lses.len());
        return Err(Error::new(Status::SHAPE_MISMATCH, F, what));
    }
    for (p, (o, l)) in outs.iter().zip(lses).enumerate() {
        extent(F, &format!("outs[{}]", p), o.len(), &[rows, dim_v])?;
        extent(F, &format!("lses[{}]", p), l.len(), &[rows])?;
    }
    extent(F, "out", out.len(), &[rows, dim_v])?;
    extent(F, "lse", lse.len(), &[rows])?;
    let outs: Vec<*const f32> = outs.iter().map(|o| o.as_ptr()).collect();
    let lses: Vec<*const f32> = lses.iter().map(|l| l.as_ptr()).collect();
    let (op, lp) =
        if outs.is_empty() { (ptr::null(), ptr::null()) } else { (outs.as_ptr(), lses.as_ptr()) };
    // SAFETY: every part has the lengths of the shapes (checked above); out
    // and lse are distinct &mut borrows, so they overlap no part.
    check(unsafe {
        sys::attn_merge_partials(
            outs.len() as i64,
            rows,
            dim_v,
            op,
            lp,
            out.as_mut_ptr(),
            lse.as_mut_ptr(),
        )
    })
}
