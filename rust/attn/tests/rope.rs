//! RoPE against its formula (Su et al. 2021, eq. 34) in float64: both
//! pairings, partial rotary, positions given or counted from start, both
//! layouts, the inverse, and every frequency source (base, linear and
//! Llama 3 scaling, the caller's inv_freq, the caller's tables).

mod common;

use attn::{Context, Layout, Mha, MhaProperty, Rope, RopeStyle, Status};
use common::{assert_close, inv_freq, rope_rotate, wide, Rng};
use std::f64::consts::PI;

/// x [batch, heads, seq, hd] (BHSD) or [batch, seq, heads, hd] (BSHD)
/// rotated by the reference at position pos(b, s)·(per-pair frequencies).
fn reference(
    x: &[f32],
    bshd: bool,
    dims: (usize, usize, usize, usize),
    freq: &[f64],
    half: bool,
    pos: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let (batch, heads, seq, hd) = dims;
    let mut y = wide(x);
    for b in 0..batch {
        for h in 0..heads {
            for s in 0..seq {
                let row = if bshd { (b * seq + s) * heads + h } else { (b * heads + h) * seq + s };
                rope_rotate(&mut y[row * hd..(row + 1) * hd], pos(b, s), freq, half);
            }
        }
    }
    y
}

#[test]
fn apply_matches_the_formula() {
    // head_dim 6 with rotary_dim 4: features 4 and 5 stay as they are.
    let (batch, heads, seq, hd) = (2usize, 3usize, 5usize, 6usize);
    let mut rng = Rng::new(30);
    let x = rng.floats(batch * heads * seq * hd, 1.0);
    let positions: Vec<i64> = vec![0, 1, 2, 1000, 7, -3, 4, 100_000, 9, 11];
    let mut ctx = Context::new().unwrap();
    for (style, half) in [(RopeStyle::HALF, true), (RopeStyle::INTERLEAVED, false)] {
        let rope = Rope::new(6, 4, 500.0, style).unwrap();
        let freq = inv_freq(500.0, 4);
        let name = if half { "half" } else { "interleaved" };

        let mut y = x.clone();
        let l = Layout::BHSD;
        rope.apply(&mut ctx, l, batch as i64, heads as i64, seq as i64, &mut y, None, 3, false)
            .unwrap();
        let want =
            reference(&x, false, (batch, heads, seq, hd), &freq, half, |_, s| 3.0 + s as f64);
        assert_close(&format!("rope {}: BHSD from start 3", name), &y, &want, 1e-6);
        for r in 0..batch * heads * seq {
            assert_eq!(y[r * hd + 4..r * hd + 6], x[r * hd + 4..r * hd + 6], "partial rotary");
        }

        let mut y = x.clone();
        let l = Layout::BSHD;
        let p = Some(positions.as_slice());
        rope.apply(&mut ctx, l, batch as i64, heads as i64, seq as i64, &mut y, p, 0, false)
            .unwrap();
        let want = reference(&x, true, (batch, heads, seq, hd), &freq, half, |b, s| {
            positions[b * seq + s] as f64
        });
        assert_close(&format!("rope {}: BSHD positions", name), &y, &want, 1e-6);

        // The inverse rotation undoes it (the backward).
        rope.apply(&mut ctx, l, batch as i64, heads as i64, seq as i64, &mut y, p, 0, true)
            .unwrap();
        assert_close(&format!("rope {}: inverse", name), &y, &wide(&x), 1e-6);
    }
}

fn rotate(rope: &Rope, x: &[f32], seq: usize) -> Vec<f32> {
    let mut ctx = Context::new().unwrap();
    let mut y = x.to_vec();
    rope.apply(&mut ctx, Layout::BHSD, 1, 1, seq as i64, &mut y, None, 0, false).unwrap();
    y
}

#[test]
fn frequency_sources() {
    let (hd, seq) = (16usize, 40usize);
    let mut rng = Rng::new(31);
    let x = rng.floats(seq * hd, 1.0);
    let base = inv_freq(10000.0, hd);
    let by_position =
        |freq: &[f64]| reference(&x, false, (1, 1, seq, hd), freq, true, |_, s| s as f64);
    let mut rope = Rope::new(16, 16, 10000.0, RopeStyle::HALF).unwrap();
    assert_close("rope: base", &rotate(&rope, &x, seq), &by_position(&base), 1e-6);

    // Linear interpolation: θ = (p / factor)·inv_freq.
    rope.set_linear_scaling(4.0).unwrap();
    let scaled: Vec<f64> = base.iter().map(|f| f / 4.0).collect();
    assert_close("rope: linear scaling 4", &rotate(&rope, &x, seq), &by_position(&scaled), 1e-6);

    // Llama 3.1's scaling, with L = 64 so that wavelengths fall in all
    // three bands (kept below L/4, divided above L/1, blended between).
    rope.set_llama3_scaling(8.0, 1.0, 4.0, 64).unwrap();
    let (l, lo, hi) = (64.0, 1.0, 4.0);
    let llama: Vec<f64> = base
        .iter()
        .map(|&f| {
            let wavelength = 2.0 * PI / f;
            if wavelength < l / hi {
                f
            } else if wavelength > l / lo {
                f / 8.0
            } else {
                let s = (l / wavelength - lo) / (hi - lo);
                (1.0 - s) * f / 8.0 + s * f
            }
        })
        .collect();
    let bands = |lo_w: f64, hi_w: f64| {
        base.iter().filter(|&&f| (lo_w..hi_w).contains(&(2.0 * PI / f))).count()
    };
    assert!(bands(0.0, 16.0) > 0 && bands(16.0, 64.0) > 0 && bands(64.0, 1e9) > 0);
    assert_close("rope: llama3 scaling", &rotate(&rope, &x, seq), &by_position(&llama), 1e-6);

    // The caller's frequencies, copied.
    let mine: Vec<f32> = (0..8).map(|i| 0.5f32.powi(i)).collect();
    rope.set_inv_freq(&mine).unwrap();
    assert_close("rope: inv_freq", &rotate(&rope, &x, seq), &by_position(&wide(&mine)), 1e-6);

    // The caller's tables: used as given (a magnitude of 0.9 included).
    let mut cos = vec![0.0f32; seq * 8];
    let mut sin = vec![0.0f32; seq * 8];
    for p in 0..seq {
        for i in 0..8 {
            let t = 0.3 * p as f64 + i as f64;
            cos[p * 8 + i] = (0.9 * t.cos()) as f32;
            sin[p * 8 + i] = (0.9 * t.sin()) as f32;
        }
    }
    rope.set_tables(&cos, &sin, seq as i64).unwrap();
    let mut want = wide(&x);
    for p in 0..seq {
        for i in 0..8 {
            let (c, s) = (cos[p * 8 + i] as f64, sin[p * 8 + i] as f64);
            let (a, b) = (p * hd + i, p * hd + i + 8);
            let (x1, x2) = (want[a], want[b]);
            want[a] = x1 * c - x2 * s;
            want[b] = x2 * c + x1 * s;
        }
    }
    assert_close("rope: tables", &rotate(&rope, &x, seq), &want, 1e-6);
    // A position outside the tables.
    let mut ctx = Context::new().unwrap();
    let mut y = x.clone();
    let err =
        rope.apply(&mut ctx, Layout::BHSD, 1, 1, seq as i64, &mut y, None, 1, false).unwrap_err();
    assert_eq!(err.status(), Status::INVALID_ARGUMENT);
    assert!(err.message().starts_with("attn_rope_apply: "), "{}", err.message());
    assert_eq!(y, x, "x untouched on failure");
}

#[test]
fn mha_takes_a_copy_of_the_rope() {
    let mut mha = Mha::new(8, 2, 2, 8, 8, false).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_ROPE).unwrap(), 0);
    let rope = Rope::new(4, 2, 10000.0, RopeStyle::INTERLEAVED).unwrap();
    mha.set_rope(Some(&rope)).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_ROPE).unwrap(), 1);
    mha.set_rope(None).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_ROPE).unwrap(), 0);
    let wrong = Rope::new(8, 8, 10000.0, RopeStyle::HALF).unwrap();
    let err = mha.set_rope(Some(&wrong)).unwrap_err();
    assert_eq!(err.status(), Status::SHAPE_MISMATCH);
    assert!(err.message().starts_with("attn_mha_set_rope: "), "{}", err.message());
    assert_eq!(mha.property(MhaProperty::HAS_ROPE).unwrap(), 0, "unchanged on failure");
    assert_eq!((rope.head_dim(), rope.rotary_dim()), (4, 2));
}
