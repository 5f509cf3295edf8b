//! SDPA's backward and dropout against float64: the reference forward of
//! tests/common (Vaswani eq. 1 with attn.h's masks and modifiers), its
//! gradients by central differences of L = Σ d_out · out.

mod common;

use attn::{Causal, Context, Layout, Mask, Sdpa};
use common::{assert_close, dot, num_grad, wide, Attn, Rng};

/// Runs forward and backward through libattn and compares out, lse, d_q,
/// d_k, d_v with the reference's.
fn check_backward(name: &str, op: &Sdpa, a: &Attn, mask: Option<&Mask<'_>>, seed: u64) {
    let mut rng = Rng::new(seed);
    let q = rng.floats(a.b * a.hq * a.lq * a.dqk, 1.0);
    let k = rng.floats(a.b * a.hkv * a.lkv * a.dqk, 1.0);
    let v = rng.floats(a.b * a.hkv * a.lkv * a.dv, 1.0);
    let d_out = rng.floats(a.b * a.hq * a.lq * a.dv, 1.0);
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; op.out_len()];
    let mut lse = vec![0.0f32; op.lse_len()];
    op.forward(&mut ctx, &q, &k, &v, mask, &mut out, None, Some(&mut lse)).unwrap();
    let (qw, kw, vw, dw) = (wide(&q), wide(&k), wide(&v), wide(&d_out));
    let (out_ref, lse_ref, _) = a.forward(&qw, &kw, &vw);
    assert_close(&format!("{}: out", name), &out, &out_ref, 1e-5);
    let finite: Vec<f64> = lse_ref.iter().map(|&l| if l.is_finite() { l } else { 0.0 }).collect();
    let lse_finite: Vec<f32> = lse.iter().map(|&l| if l.is_finite() { l } else { 0.0 }).collect();
    assert_eq!(
        lse.iter().map(|l| l.is_finite()).collect::<Vec<_>>(),
        lse_ref.iter().map(|l| l.is_finite()).collect::<Vec<_>>(),
        "{}: rows without visible keys",
        name
    );
    assert_close(&format!("{}: lse", name), &lse_finite, &finite, 1e-5);

    let (mut dq, mut dk, mut dv) =
        (vec![9.0f32; q.len()], vec![9.0f32; k.len()], vec![9.0; v.len()]);
    op.backward(
        &mut ctx,
        &q,
        &k,
        &v,
        mask,
        &out,
        &lse,
        &d_out,
        Some(&mut dq),
        Some(&mut dk),
        Some(&mut dv),
    )
    .unwrap();
    let h = 1e-6;
    let dq_ref = num_grad(&qw, h, |x| dot(&dw, &a.forward(x, &kw, &vw).0));
    let dk_ref = num_grad(&kw, h, |x| dot(&dw, &a.forward(&qw, x, &vw).0));
    let dv_ref = num_grad(&vw, h, |x| dot(&dw, &a.forward(&qw, &kw, x).0));
    assert_close(&format!("{}: d_q", name), &dq, &dq_ref, 2e-5);
    assert_close(&format!("{}: d_k", name), &dk, &dk_ref, 2e-5);
    assert_close(&format!("{}: d_v", name), &dv, &dv_ref, 2e-5);

    // Only d_k: the same numbers, the other outputs not needed.
    let mut dk2 = vec![0.0f32; k.len()];
    op.backward(&mut ctx, &q, &k, &v, mask, &out, &lse, &d_out, None, Some(&mut dk2), None)
        .unwrap();
    assert_eq!(dk2, dk, "{}: d_k alone", name);
}

#[test]
fn backward_gqa_causal_valid_lengths() {
    // 4 query heads over 2 kv heads, bottom-right causal, valid lengths
    // [7, 4]: keys beyond a row's length get zero gradients.
    let mut a = Attn::new(2, 4, 2, 5, 7, 3, 4);
    a.causal = 2;
    a.lengths = Some(vec![7, 4]);
    let lengths = [7i64, 4];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, 2).unwrap();
    let mut op = Sdpa::new(2, 4, 2, 5, 7, 3, 4).unwrap();
    op.set_causal(Causal::BOTTOM_RIGHT).unwrap();
    check_backward("gqa causal lengths", &op, &a, Some(&mask), 1);
}

#[test]
fn backward_bshd_top_left_rows_without_keys() {
    // BSHD, top-left causal with len_q > len_kv... and a zero valid length:
    // a row that sees no key gets zeros, lse −inf, zero gradients.
    let mut a = Attn::new(2, 2, 1, 4, 3, 2, 3);
    a.bshd = true;
    a.causal = 1;
    a.lengths = Some(vec![0, 3]);
    let lengths = [0i64, 3];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, 2).unwrap();
    let mut op = Sdpa::new(2, 2, 1, 4, 3, 2, 3).unwrap();
    op.set_layout(Layout::BSHD).unwrap().set_causal(Causal::TOP_LEFT).unwrap();
    check_backward("bshd top-left empty rows", &op, &a, Some(&mask), 2);
}

#[test]
fn backward_with_score_modifiers() {
    // Softcap, a two-sided window without causal, explicit ALiBi slopes and
    // a custom scale, in the forward and the backward.
    let mut a = Attn::new(1, 2, 2, 6, 6, 3, 2);
    a.scale = 0.9;
    a.softcap = 1.5;
    a.window = (2, 1);
    a.alibi = Some(vec![0.5, 0.125]);
    let mut op = Sdpa::new(1, 2, 2, 6, 6, 3, 2).unwrap();
    op.set_scale(0.9).unwrap().set_softcap(1.5).unwrap().set_window(2, 1).unwrap();
    op.set_alibi(Some(&[0.5, 0.125])).unwrap();
    check_backward("softcap window alibi", &op, &a, None, 3);
}

#[test]
fn dropout_keep_mask_forward_and_backward() {
    let (b, h, lq, lkv) = (1usize, 2usize, 16usize, 32usize);
    let mut op = Sdpa::new(b as i64, h as i64, h as i64, lq as i64, lkv as i64, 4, 4).unwrap();
    let mut keep = vec![7u8; b * h * lq * lkv];
    op.dropout_keep_mask(&mut keep).unwrap();
    assert!(keep.iter().all(|&x| x == 1), "p = 0 keeps everything");

    op.set_dropout(0.3, 42).unwrap();
    op.dropout_keep_mask(&mut keep).unwrap();
    assert!(keep.iter().all(|&x| x <= 1));
    let kept = keep.iter().filter(|&&x| x == 1).count() as f64 / keep.len() as f64;
    // 1024 draws of p = 0.7: σ = 0.014.
    assert!((0.62..0.78).contains(&kept), "kept fraction {}", kept);
    let mut again = vec![0u8; keep.len()];
    op.dropout_keep_mask(&mut again).unwrap();
    assert_eq!(again, keep, "a pure function of the seed");
    op.set_dropout(0.3, 43).unwrap();
    op.dropout_keep_mask(&mut again).unwrap();
    assert_ne!(again, keep, "another seed, another mask");
    op.set_dropout(0.3, 42).unwrap();

    // Forward weights are the softmax times keep / (1 − p).
    let mut a = Attn::new(b, h, h, lq, lkv, 4, 4);
    a.dropout = Some((keep.clone(), 0.3f32 as f64));
    let mut rng = Rng::new(4);
    let q = rng.floats(b * h * lq * 4, 1.0);
    let k = rng.floats(b * h * lkv * 4, 1.0);
    let v = rng.floats(b * h * lkv * 4, 1.0);
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; op.out_len()];
    let mut w = vec![0.0f32; op.weights_len()];
    op.forward(&mut ctx, &q, &k, &v, None, &mut out, Some(&mut w), None).unwrap();
    let (out_ref, _, w_ref) = a.forward(&wide(&q), &wide(&k), &wide(&v));
    assert_close("dropout: weights", &w, &w_ref, 1e-5);
    assert_close("dropout: out", &out, &out_ref, 1e-5);

    // The backward regenerates the same mask: a small op for the differences.
    let mut small = Sdpa::new(1, 2, 1, 4, 5, 3, 2).unwrap();
    small.set_dropout(0.25, 9).unwrap();
    let mut keep = vec![0u8; small.weights_len()];
    small.dropout_keep_mask(&mut keep).unwrap();
    assert!(keep.contains(&0) && keep.contains(&1), "a mask that drops something: {:?}", keep);
    let mut a = Attn::new(1, 2, 1, 4, 5, 3, 2);
    a.dropout = Some((keep, 0.25));
    check_backward("dropout", &small, &a, None, 5);
}
