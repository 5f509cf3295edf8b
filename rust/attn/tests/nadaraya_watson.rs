//! Nadaraya–Watson regression (D2L §10.2) and its gradients against
//! float64: the forward from the formula, the gradients (queries, keys,
//! values and the width w) by central differences.

mod common;

use attn::Context;
use common::{assert_close, dot, num_grad, wide, Rng};

/// f(x_i) = Σ_j softmax_j(−((x_i − k_j)·w)²/2) · v_j.
fn nw(queries: &[f64], keys: &[f64], values: &[f64], w: f64) -> Vec<f64> {
    queries
        .iter()
        .map(|x| {
            let s: Vec<f64> = keys.iter().map(|k| -((x - k) * w).powi(2) / 2.0).collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|t| (t - m).exp()).sum();
            s.iter().zip(values).map(|(t, v)| (t - m).exp() / z * v).sum()
        })
        .collect()
}

#[test]
fn forward_and_backward() {
    let mut rng = Rng::new(50);
    let queries: Vec<f32> = (0..6).map(|_| rng.uniform(0.0, 5.0) as f32).collect();
    let keys: Vec<f32> = (0..9).map(|_| rng.uniform(0.0, 5.0) as f32).collect();
    let values = rng.floats(9, 2.0);
    let d_out = rng.floats(6, 1.0);
    let w = 1.7f32;
    let (qw, kw, vw, dw, ww) = (wide(&queries), wide(&keys), wide(&values), wide(&d_out), w as f64);
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; 6];
    let mut weights = vec![0.0f32; 6 * 9];
    attn::nadaraya_watson(&mut ctx, &queries, &keys, &values, w, &mut out, Some(&mut weights))
        .unwrap();
    assert_close("nw: out", &out, &nw(&qw, &kw, &vw, ww), 1e-5);
    for row in weights.chunks(9) {
        assert!((row.iter().map(|&p| p as f64).sum::<f64>() - 1.0).abs() < 1e-6);
    }

    let (mut dq, mut dk, mut dv, mut d_w) =
        (vec![0.0f32; 6], vec![0.0f32; 9], vec![0.0f32; 9], 0.0f32);
    attn::nadaraya_watson_backward(
        &mut ctx,
        &queries,
        &keys,
        &values,
        w,
        &d_out,
        Some(&mut dq),
        Some(&mut dk),
        Some(&mut dv),
        Some(&mut d_w),
    )
    .unwrap();
    let h = 1e-6;
    assert_close("nw: d_queries", &dq, &num_grad(&qw, h, |x| dot(&dw, &nw(x, &kw, &vw, ww))), 1e-5);
    assert_close("nw: d_keys", &dk, &num_grad(&kw, h, |x| dot(&dw, &nw(&qw, x, &vw, ww))), 1e-5);
    assert_close("nw: d_values", &dv, &num_grad(&vw, h, |x| dot(&dw, &nw(&qw, &kw, x, ww))), 1e-5);
    let want = num_grad(&[ww], h, |x| dot(&dw, &nw(&qw, &kw, &vw, x[0])));
    assert_close("nw: d_w", &[d_w], &want, 1e-5);

    // d_w alone: the same bits (sums in double, in order).
    let mut alone = 0.0f32;
    attn::nadaraya_watson_backward(
        &mut ctx,
        &queries,
        &keys,
        &values,
        w,
        &d_out,
        None,
        None,
        None,
        Some(&mut alone),
    )
    .unwrap();
    assert_eq!(alone.to_bits(), d_w.to_bits());
}

#[test]
fn no_keys_gives_zeros() {
    let mut ctx = Context::new().unwrap();
    let mut out = [5.0f32; 2];
    attn::nadaraya_watson(&mut ctx, &[1.0, 2.0], &[], &[], 1.0, &mut out, None).unwrap();
    assert_eq!(out, [0.0, 0.0]);
    let (mut dq, mut d_w) = ([5.0f32; 2], 5.0f32);
    attn::nadaraya_watson_backward(
        &mut ctx,
        &[1.0, 2.0],
        &[],
        &[],
        1.0,
        &[1.0, 1.0],
        Some(&mut dq),
        None,
        None,
        Some(&mut d_w),
    )
    .unwrap();
    assert_eq!((dq, d_w), ([0.0, 0.0], 0.0));
}
