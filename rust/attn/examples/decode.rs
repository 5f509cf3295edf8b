//! `cargo run --example decode`: token-by-token decoding with libattn's
//! paged KV cache, the Rust version of examples/c/decode_example.c.
//!
//! A causal multi-head self-attention layer (embed 64, 8 query heads sharing
//! 2 key/value heads, RoPE) decodes two sequences at once: every call of
//! `Mha::forward_cached` takes one new token of each sequence, appends its
//! keys and values to the cache and attends to everything cached, so a step
//! costs one token's projections and one read of the cache. The next token's
//! input is made from the last output (a stand-in for sampling and
//! embedding).
//!
//! At the end it checks itself against one causal `Mha::forward` over each
//! whole sequence (what a program without a cache recomputes at every
//! step): it prints the largest difference and fails (exit status 1) if it
//! is above 1e-5.

use attn::{Causal, Context, KvCache, Mha, Rope, RopeStyle};
use std::process::ExitCode;

const E: usize = 64;
const HEADS: i64 = 8;
const KV_HEADS: i64 = 2;
const HEAD_DIM: i64 = E as i64 / HEADS;
const TOKENS: [usize; 2] = [12, 9];

/// Deterministic stand-ins for trained weights and token embeddings:
/// uniform in [-scale, scale).
fn fill(n: usize, mut seed: u32, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            scale * (2.0 * (seed >> 8) as f32 / 16_777_216.0 - 1.0)
        })
        .collect()
}

fn main() -> Result<ExitCode, attn::Error> {
    let mut ctx = Context::new()?;
    let mut mha = Mha::new(E as i64, HEADS, KV_HEADS, E as i64, E as i64, true)?;
    // Weights of the size a trained layer has (±1/√E).
    let params = fill(mha.param_count(), 1, 1.0 / (E as f32).sqrt());
    mha.set_params(&params)?;
    mha.set_causal(Causal::BOTTOM_RIGHT)?;
    let rope = Rope::new(HEAD_DIM, HEAD_DIM, 10000.0, RopeStyle::HALF)?;
    mha.set_rope(Some(&rope))?; // the layer keeps a copy

    // 8 pages of 4 tokens: enough for both sequences (12 and 9 tokens).
    let mut cache = KvCache::new(KV_HEADS, HEAD_DIM, HEAD_DIM, 4, 8)?;
    let seqs = [cache.seq_open()?, cache.seq_open()?];

    // Each sequence's inputs and the cached layer's outputs, row by row.
    let mut x: Vec<Vec<f32>> = vec![fill(E, 2, 1.0), fill(E, 3, 1.0)];
    let mut y: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    let mut len = [0usize; 2];
    println!("libattn {}: decoding 2 sequences through the KV cache", attn::version());
    while len[0] < TOKENS[0] || len[1] < TOKENS[1] {
        // One new token for every sequence not yet complete.
        let active: Vec<usize> = (0..2).filter(|&s| len[s] < TOKENS[s]).collect();
        let ids: Vec<i64> = active.iter().map(|&s| seqs[s]).collect();
        let cu_q: Vec<i64> = (0..=active.len() as i64).collect();
        let mut input = Vec::with_capacity(active.len() * E);
        for &s in &active {
            if len[s] > 0 {
                let last = &y[s][(len[s] - 1) * E..];
                let next: Vec<f32> = last.iter().map(|v| v.tanh()).collect();
                x[s].extend(next);
            }
            input.extend_from_slice(&x[s][len[s] * E..(len[s] + 1) * E]);
        }
        let mut out = vec![0.0f32; active.len() * E];
        mha.forward_cached(&mut ctx, &mut cache, &ids, &cu_q, &input, &mut out)?;
        for (r, &s) in active.iter().enumerate() {
            y[s].extend_from_slice(&out[r * E..(r + 1) * E]);
            len[s] += 1;
        }
        println!(
            "step {:2}: {} tokens cached, sequence 0 out[0..4] = {:+.4} {:+.4} {:+.4} {:+.4}",
            len[0].max(len[1]),
            cache.seq_len(seqs[0])? + cache.seq_len(seqs[1])?,
            y[0][(len[0] - 1) * E],
            y[0][(len[0] - 1) * E + 1],
            y[0][(len[0] - 1) * E + 2],
            y[0][(len[0] - 1) * E + 3]
        );
    }

    // The check: one causal forward over each whole sequence.
    let mut worst = 0.0f64;
    for s in 0..2 {
        let n = len[s] as i64;
        let mut full = vec![0.0f32; len[s] * E];
        mha.forward(&mut ctx, 1, n, n, &x[s], &x[s], &x[s], None, &mut full, None)?;
        let diff =
            full.iter().zip(&y[s]).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
        println!(
            "sequence {}: {} tokens cached; cached vs full causal forward: max |diff| {:.2e}",
            s,
            cache.seq_len(seqs[s])?,
            diff
        );
        worst = worst.max(diff);
    }
    println!("max difference {:.2e}", worst);
    if worst <= 1e-5 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the cached decoding differs from the full forward by {:.2e} > 1e-5", worst);
        Ok(ExitCode::FAILURE)
    }
}
