//! The seed's worked example (UvA deep-learning tutorial 6) through the safe
//! wrapper, D2L §10.3's valid lengths, and the error paths: libattn's own
//! (status and attn_last_error() text) and the wrapper's length checks.

use attn::{Causal, Context, Error, Mask, Sdpa, Status};

const Q: [f32; 6] = [0.3367, 0.1288, 0.2345, 0.2303, -1.1229, -0.1863];
const K: [f32; 6] = [2.2082, -0.6380, 0.4617, 0.2674, 0.5349, 0.8094];
const V: [f32; 6] = [1.1103, -1.6898, -0.9890, 0.9580, 1.3221, 0.8172];

/// The tutorial's printed Values and Attention.
const VALUES: [f32; 6] = [0.5698, -0.1520, 0.5379, -0.0265, 0.2246, 0.5556];
const ATTENTION: [f32; 9] =
    [0.4028, 0.2886, 0.3086, 0.3538, 0.3069, 0.3393, 0.1303, 0.4630, 0.4067];

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {}: got {}, want {}", i, g, w);
    }
}

#[test]
fn reproduces_the_uva_example() {
    let mut ctx = Context::new().unwrap();
    let op = Sdpa::new(1, 1, 1, 3, 3, 2, 2).unwrap();
    let mut values = vec![0.0f32; op.out_len()];
    let mut attention = vec![0.0f32; op.weights_len()];
    let mut lse = vec![0.0f32; op.lse_len()];
    op.forward(&mut ctx, &Q, &K, &V, None, &mut values, Some(&mut attention), Some(&mut lse))
        .unwrap();
    // The tutorial printed its inputs rounded to 4 decimals; from the rounded
    // inputs the first value is 0.5697 (see README), hence 2e-4.
    assert_close(&values, &VALUES, 2e-4);
    assert_close(&attention, &ATTENTION, 1e-4);
    // lse[i] = log Σ_j exp(q_i·k_j / √2), in f64.
    for i in 0..3 {
        let s: f64 = (0..3)
            .map(|j| {
                let d =
                    Q[2 * i] as f64 * K[2 * j] as f64 + Q[2 * i + 1] as f64 * K[2 * j + 1] as f64;
                (d / 2f64.sqrt()).exp()
            })
            .sum();
        assert!((lse[i] as f64 - s.ln()).abs() < 1e-5);
    }
    // run() and a 2-thread context give the same bits.
    let mut two = Context::with_threads(2).unwrap();
    assert_eq!(op.run(&mut two, &Q, &K, &V, None).unwrap(), values);
}

#[test]
fn d2l_valid_lengths() {
    // D2L §10.3.1: keys beyond each batch row's valid length get weight 0.
    let (b, lq, lkv, d) = (2i64, 2i64, 4i64, 2i64);
    let q: Vec<f32> = (0..b * lq * d).map(|i| 0.1 * i as f32).collect();
    let k: Vec<f32> = (0..b * lkv * d).map(|i| 0.05 * i as f32).collect();
    let v: Vec<f32> = (0..b * lkv).map(|i| i as f32).collect();
    let lengths = [2i64, 3];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, b).unwrap();
    let mut op = Sdpa::new(b, 1, 1, lq, lkv, d, 1).unwrap();
    op.set_causal(Causal::NONE).unwrap();
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; op.out_len()];
    let mut w = vec![0.0f32; op.weights_len()];
    op.forward(&mut ctx, &q, &k, &v, Some(&mask), &mut out, Some(&mut w), None).unwrap();
    for bi in 0..2usize {
        for i in 0..2usize {
            let row = &w[(bi * 2 + i) * 4..(bi * 2 + i + 1) * 4];
            let n = lengths[bi] as usize;
            assert!(row[n..].iter().all(|&x| x == 0.0), "masked keys get 0: {:?}", row);
            assert!((row[..n].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}

#[test]
fn libattn_errors_carry_status_and_message() {
    let err: Error = Sdpa::new(1, 6, 4, 3, 3, 2, 2).expect_err("heads 6/4 must fail");
    assert_eq!(err.status(), Status::SHAPE_MISMATCH);
    assert_eq!(err.message(), "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)");
    assert!(err.to_string().contains("ATTN_ERR_SHAPE_MISMATCH"));

    let mut op = Sdpa::new(1, 1, 1, 3, 3, 2, 2).unwrap();
    let err = op.set_scale(f32::NAN).err().unwrap();
    assert_eq!(err.status(), Status::INVALID_ARGUMENT);

    // A valid length above len_kv is found at forward; out is untouched.
    let lengths = [5i64];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, 1).unwrap();
    let mut ctx = Context::new().unwrap();
    let mut out = [-7.0f32; 6];
    let err = op.forward(&mut ctx, &Q, &K, &V, Some(&mask), &mut out, None, None).unwrap_err();
    assert_eq!(err.status(), Status::INVALID_ARGUMENT);
    assert_eq!(
        err.message(),
        "attn_sdpa_forward: valid length 5 (index 0) is outside [0, len_kv = 3]"
    );
    assert!(out.iter().all(|&x| x == -7.0));

    assert_eq!(Context::with_threads(-1).err().unwrap().status(), Status::INVALID_ARGUMENT);
}

#[test]
fn wrong_lengths_never_reach_libattn() {
    let op = Sdpa::new(1, 1, 1, 3, 3, 2, 2).unwrap();
    let mut ctx = Context::new().unwrap();
    let mut out = [-7.0f32; 6];
    let err = op.forward(&mut ctx, &Q[..5], &K, &V, None, &mut out, None, None).unwrap_err();
    assert_eq!(err.status(), Status::SHAPE_MISMATCH);
    assert_eq!(err.message(), "Sdpa::forward: q has 5 elements, the shapes need 6");
    assert!(out.iter().all(|&x| x == -7.0));
    let mut lse = [0.0f32; 2];
    let err = op.forward(&mut ctx, &Q, &K, &V, None, &mut out, None, Some(&mut lse)).unwrap_err();
    assert_eq!(err.message(), "Sdpa::forward: lse has 2 elements, the shapes need 3");
}

#[test]
fn version_and_other_layers() {
    assert_eq!(attn::version().split('.').count(), 3);
    assert!(attn::version_number() >= 10000);

    let p = attn::positional_encoding(2, 4, 0, 10000.0).unwrap();
    assert_close(
        &p,
        &[0.0, 1.0, 0.0, 1.0, 1f32.sin(), 1f32.cos(), 0.01f32.sin(), 0.01f32.cos()],
        1e-6,
    );
    assert_eq!(
        attn::positional_encoding(2, 3, 0, 10000.0).unwrap_err().status(),
        Status::INVALID_ARGUMENT
    );

    let mut ctx = Context::new().unwrap();
    let mut out = [0.0f32; 1];
    attn::nadaraya_watson(&mut ctx, &[1.0], &[0.0, 2.0], &[1.0, 3.0], 1.0, &mut out, None).unwrap();
    assert!((out[0] - 2.0).abs() < 1e-6, "equidistant keys: the mean, got {}", out[0]);

    // An MHA layer with identity projections and one head is SDPA on x.
    let e = 2i64;
    let eye = [1.0f32, 0.0, 0.0, 1.0];
    let mut mha = attn::Mha::new(e, 1, 1, e, e, false).unwrap();
    for which in [attn::Proj::Q, attn::Proj::K, attn::Proj::V, attn::Proj::O] {
        mha.set_weights(which, &eye, None).unwrap();
    }
    let mut y = [0.0f32; 6];
    mha.forward(&mut ctx, 1, 3, 3, &Q, &Q, &Q, None, &mut y, None).unwrap();
    let sdpa = Sdpa::new(1, 1, 1, 3, 3, 2, 2).unwrap().run(&mut ctx, &Q, &Q, &Q, None).unwrap();
    assert_close(&y, &sdpa, 1e-6);
    let unset = attn::Mha::new(e, 1, 1, e, e, false).unwrap();
    assert_eq!(
        unset.forward(&mut ctx, 1, 3, 3, &Q, &Q, &Q, None, &mut y, None).unwrap_err().status(),
        Status::STATE
    );

    // Additive attention with equal scores averages the values.
    let mut add = attn::Additive::new(2, 2, 3).unwrap();
    add.set_weights(&[0.0; 6], &[0.0; 6], &[1.0; 3]).unwrap();
    let mut o = [0.0f32; 2];
    add.forward(&mut ctx, 1, 1, 3, 2, &Q[..2], &K, &V, None, &mut o, None).unwrap();
    assert_close(&o, &[(V[0] + V[2] + V[4]) / 3.0, (V[1] + V[3] + V[5]) / 3.0], 1e-6);
}
