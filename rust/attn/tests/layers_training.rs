//! The layers' training calls against float64: multi-head attention
//! (forward_train, backward, self-attention sums, dropout, flat parameters),
//! additive attention, the encoder layer and layer normalisation. The
//! references are tests/common's forwards; their gradients are central
//! differences of L = Σ d_out · out.

mod common;

use attn::{
    Activation, Activations, Additive, Causal, Context, EncoderLayer, Mask, Mha, MhaProperty, Sdpa,
};
use common::{assert_close, dot, erf, layer_norm, num_grad, wide, EncoderShape, MhaShape, Rng};

const H: f64 = 1e-6;

#[test]
fn mha_cross_attention_gqa_backward() {
    // E 6, 3 query heads over 1 kv head, kdim 4, vdim 5, biases, valid
    // lengths [4, 2]: every gradient against the f64 layer.
    let (batch, lq, lkv) = (2usize, 3usize, 4usize);
    let mut s = MhaShape::new(6, 3, 1, 4, 5);
    s.lengths = Some(vec![4, 2]);
    let mut mha = Mha::new(6, 3, 1, 4, 5, true).unwrap();
    assert_eq!(mha.param_count(), s.param_count());
    let mut rng = Rng::new(10);
    let params = rng.floats(s.param_count(), 0.5);
    mha.set_params(&params).unwrap();
    assert_eq!(mha.params().unwrap(), params, "get_params returns what set_params copied");
    let query = rng.floats(batch * lq * 6, 1.0);
    let key = rng.floats(batch * lkv * 4, 1.0);
    let value = rng.floats(batch * lkv * 5, 1.0);
    let d_out = rng.floats(batch * lq * 6, 1.0);
    let lengths = [4i64, 2];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, 2).unwrap();

    let mut ctx = Context::new().unwrap();
    let mut act = Activations::new().unwrap();
    let mut out = vec![0.0f32; query.len()];
    let (b, q, k) = (batch as i64, lq as i64, lkv as i64);
    let tape = mha
        .forward_train(
            &mut ctx,
            b,
            q,
            k,
            &query,
            &key,
            &value,
            Some(&mask),
            &mut out,
            None,
            &mut act,
        )
        .unwrap();
    let (pw, qw, kw, vw, dw) =
        (wide(&params), wide(&query), wide(&key), wide(&value), wide(&d_out));
    let out_ref = s.forward(&pw, batch, lq, lkv, &qw, &kw, &vw);
    assert_close("mha: forward_train out", &out, &out_ref, 1e-5);
    let mut inference = vec![0.0f32; out.len()];
    mha.forward(&mut ctx, b, q, k, &query, &key, &value, Some(&mask), &mut inference, None)
        .unwrap();
    assert_eq!(inference, out, "forward_train without dropout is forward");

    let mut dq = vec![0.0f32; query.len()];
    let mut dk = vec![0.0f32; key.len()];
    let mut dv = vec![0.0f32; value.len()];
    let mut dp = vec![0.0f32; params.len()];
    mha.backward(
        &mut ctx,
        &tape,
        &d_out,
        Some(&mut dq),
        Some(&mut dk),
        Some(&mut dv),
        Some(&mut dp),
    )
    .unwrap();
    let loss = |p: &[f64], x: &[f64], y: &[f64], z: &[f64]| {
        dot(&dw, &s.forward(p, batch, lq, lkv, x, y, z))
    };
    assert_close("mha: d_query", &dq, &num_grad(&qw, H, |x| loss(&pw, x, &kw, &vw)), 2e-5);
    assert_close("mha: d_key", &dk, &num_grad(&kw, H, |x| loss(&pw, &qw, x, &vw)), 2e-5);
    assert_close("mha: d_value", &dv, &num_grad(&vw, H, |x| loss(&pw, &qw, &kw, x)), 2e-5);
    assert_close("mha: d_params", &dp, &num_grad(&pw, H, |p| loss(p, &qw, &kw, &vw)), 2e-5);

    // The tape may serve again; d_params alone is the same bits.
    let mut dp2 = vec![0.0f32; params.len()];
    mha.backward(&mut ctx, &tape, &d_out, None, None, None, Some(&mut dp2)).unwrap();
    assert_eq!(dp2, dp);
}

#[test]
fn mha_self_attention_sum_and_dropout() {
    // Self-attention, causal: backward_self_attention's d_x is the gradient
    // with respect to the one input passed as query, key and value.
    let (batch, len, e) = (2usize, 4usize, 4usize);
    let mut s = MhaShape::new(e, 2, 2, e, e);
    s.causal = 1;
    let mut mha = Mha::new(4, 2, 2, 4, 4, true).unwrap();
    mha.set_causal(Causal::TOP_LEFT).unwrap();
    let mut rng = Rng::new(11);
    let params = rng.floats(s.param_count(), 0.5);
    mha.set_params(&params).unwrap();
    let x = rng.floats(batch * len * e, 1.0);
    let d_out = rng.floats(batch * len * e, 1.0);
    let (pw, xw, dw) = (wide(&params), wide(&x), wide(&d_out));
    let (b, l) = (batch as i64, len as i64);
    let mut ctx = Context::new().unwrap();
    let mut act = Activations::new().unwrap();
    let mut out = vec![0.0f32; x.len()];
    let tape =
        mha.forward_train(&mut ctx, b, l, l, &x, &x, &x, None, &mut out, None, &mut act).unwrap();
    let mut dx = vec![0.0f32; x.len()];
    mha.backward_self_attention(&mut ctx, &tape, &d_out, &mut dx, None).unwrap();
    let want = num_grad(&xw, H, |x| dot(&dw, &s.forward(&pw, batch, len, len, x, x, x)));
    assert_close("mha self-attention: d_x", &dx, &want, 2e-5);

    // Dropout on the layer's weights: the mask of an SDPA op of the
    // layer's attention shapes with the same p and seed (attn_training.h).
    assert_eq!(mha.property(MhaProperty::HAS_DROPOUT).unwrap(), 0);
    mha.set_dropout(0.4, 77).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_DROPOUT).unwrap(), 1);
    let mut sdpa = Sdpa::new(b, 2, 2, l, l, 2, 2).unwrap();
    sdpa.set_dropout(0.4, 77).unwrap();
    let mut keep = vec![0u8; sdpa.weights_len()];
    sdpa.dropout_keep_mask(&mut keep).unwrap();
    assert!(keep.contains(&0));
    s.dropout = Some((keep, 0.4f32 as f64));
    let tape =
        mha.forward_train(&mut ctx, b, l, l, &x, &x, &x, None, &mut out, None, &mut act).unwrap();
    assert_close("mha dropout: out", &out, &s.forward(&pw, batch, len, len, &xw, &xw, &xw), 1e-5);
    let mut dp = vec![0.0f32; params.len()];
    mha.backward_self_attention(&mut ctx, &tape, &d_out, &mut dx, Some(&mut dp)).unwrap();
    let want = num_grad(&xw, H, |x| dot(&dw, &s.forward(&pw, batch, len, len, x, x, x)));
    assert_close("mha dropout: d_x", &dx, &want, 2e-5);
    let want = num_grad(&pw, H, |p| dot(&dw, &s.forward(p, batch, len, len, &xw, &xw, &xw)));
    assert_close("mha dropout: d_params", &dp, &want, 2e-5);
    // Inference never drops.
    let mut inference = vec![0.0f32; x.len()];
    mha.forward(&mut ctx, b, l, l, &x, &x, &x, None, &mut inference, None).unwrap();
    s.dropout = None;
    assert_close(
        "mha dropout: inference",
        &inference,
        &s.forward(&pw, batch, len, len, &xw, &xw, &xw),
        1e-5,
    );
}

/// D2L §10.3.2's additive attention in f64: params W_q [hidden, qd],
/// W_k [hidden, kd], w_v [hidden]; valid lengths per batch row.
#[allow(clippy::too_many_arguments)]
fn additive_ref(
    p: &[f64],
    dims: (usize, usize, usize, usize),
    batch: usize,
    lq: usize,
    lkv: usize,
    lengths: &[usize],
    queries: &[f64],
    keys: &[f64],
    values: &[f64],
) -> Vec<f64> {
    let (qd, kd, hidden, dv) = dims;
    let (wq, rest) = p.split_at(hidden * qd);
    let (wk, wv) = rest.split_at(hidden * kd);
    let qp = common::linear(queries, wq, None, qd, hidden);
    let kp = common::linear(keys, wk, None, kd, hidden);
    let mut out = vec![0.0; batch * lq * dv];
    for b in 0..batch {
        for i in 0..lq {
            let n = lengths[b];
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    let (qr, kr) = ((b * lq + i) * hidden, (b * lkv + j) * hidden);
                    (0..hidden).map(|c| wv[c] * (qp[qr + c] + kp[kr + c]).tanh()).sum()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for (j, s) in scores.iter().enumerate() {
                for c in 0..dv {
                    out[(b * lq + i) * dv + c] +=
                        (s - m).exp() / z * values[(b * lkv + j) * dv + c];
                }
            }
        }
    }
    out
}

#[test]
fn additive_backward() {
    let (batch, lq, lkv, qd, kd, hidden, dv) =
        (2usize, 2usize, 3usize, 3usize, 2usize, 4usize, 2usize);
    let dims = (qd, kd, hidden, dv);
    let mut op = Additive::new(3, 2, 4).unwrap();
    assert_eq!(op.param_count(), hidden * (qd + kd + 1));
    let mut rng = Rng::new(12);
    let params = rng.floats(op.param_count(), 1.0);
    op.set_params(&params).unwrap();
    let mut back = vec![0.0f32; params.len()];
    op.get_params(&mut back).unwrap();
    assert_eq!(back, params);
    let queries = rng.floats(batch * lq * qd, 1.0);
    let kv = rng.floats(batch * lkv * kd, 1.0); // keys and values are one tensor
    let d_out = rng.floats(batch * lq * dv, 1.0);
    let lengths = [3i64, 2];
    let mut mask = Mask::new().unwrap();
    mask.set_kv_lengths(&lengths, 2).unwrap();
    let (pw, qw, kvw, dw) = (wide(&params), wide(&queries), wide(&kv), wide(&d_out));
    let f = |p: &[f64], q: &[f64], k: &[f64], v: &[f64]| {
        additive_ref(p, dims, batch, lq, lkv, &[3, 2], q, k, v)
    };

    let mut ctx = Context::new().unwrap();
    let mut act = Activations::new().unwrap();
    let mut out = vec![0.0f32; batch * lq * dv];
    let mut weights = vec![0.0f32; batch * lq * lkv];
    let (b, q, k) = (batch as i64, lq as i64, lkv as i64);
    let tape = op
        .forward_train(
            &mut ctx,
            b,
            q,
            k,
            2,
            &queries,
            &kv,
            &kv,
            Some(&mask),
            &mut out,
            Some(&mut weights),
            &mut act,
        )
        .unwrap();
    assert_close("additive: out", &out, &f(&pw, &qw, &kvw, &kvw), 1e-5);
    assert!(weights[2 * lkv + 2] == 0.0 && weights[3 * lkv + 2] == 0.0, "masked keys");

    let mut dq = vec![0.0f32; queries.len()];
    let mut dk = vec![0.0f32; kv.len()];
    let mut dvv = vec![0.0f32; kv.len()];
    let mut dp = vec![0.0f32; params.len()];
    op.backward(
        &mut ctx,
        &tape,
        &d_out,
        Some(&mut dq),
        Some(&mut dk),
        Some(&mut dvv),
        Some(&mut dp),
    )
    .unwrap();
    let loss = |p: &[f64], q: &[f64], k: &[f64], v: &[f64]| dot(&dw, &f(p, q, k, v));
    assert_close("additive: d_queries", &dq, &num_grad(&qw, H, |x| loss(&pw, x, &kvw, &kvw)), 2e-5);
    assert_close("additive: d_keys", &dk, &num_grad(&kvw, H, |x| loss(&pw, &qw, x, &kvw)), 2e-5);
    assert_close("additive: d_values", &dvv, &num_grad(&kvw, H, |x| loss(&pw, &qw, &kvw, x)), 2e-5);
    assert_close("additive: d_params", &dp, &num_grad(&pw, H, |p| loss(p, &qw, &kvw, &kvw)), 2e-5);

    let mut dkv = vec![0.0f32; kv.len()];
    op.backward_keys_are_values(&mut ctx, &tape, &d_out, None, &mut dkv, None).unwrap();
    assert_close(
        "additive: d_keys_values",
        &dkv,
        &num_grad(&kvw, H, |x| loss(&pw, &qw, x, x)),
        2e-5,
    );
}

fn encoder_case(name: &str, s: EncoderShape, seed: u64) {
    let (batch, len, d) = (2usize, 3usize, s.d);
    let act_kind = if s.gelu { Activation::GELU } else { Activation::RELU };
    let mut layer = EncoderLayer::new(
        d as i64,
        s.heads as i64,
        s.ff as i64,
        act_kind,
        s.norm_first,
        s.eps as f32,
    )
    .unwrap();
    if s.causal {
        layer.set_causal(Causal::TOP_LEFT).unwrap();
    }
    assert_eq!(layer.param_count(), s.param_count());
    let mut rng = Rng::new(seed);
    let mut params = rng.floats(s.param_count(), 0.5);
    // Norm weights near 1, as trained layers have them.
    let n = params.len();
    for c in (n - 4 * d..n - 3 * d).chain(n - 2 * d..n - d) {
        params[c] += 1.0;
    }
    layer.set_params(&params).unwrap();
    let mut back = vec![0.0f32; n];
    layer.get_params(&mut back).unwrap();
    assert_eq!(back, params);
    let x = rng.floats(batch * len * d, 1.0);
    let d_out = rng.floats(batch * len * d, 1.0);
    let (pw, xw, dw) = (wide(&params), wide(&x), wide(&d_out));
    let (b, l) = (batch as i64, len as i64);

    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; x.len()];
    layer.forward(&mut ctx, b, l, &x, None, &mut out).unwrap();
    assert_close(&format!("{}: out", name), &out, &s.forward(&pw, batch, len, &xw), 1e-5);
    let mut inplace = x.clone();
    layer.forward_in_place(&mut ctx, b, l, &mut inplace, None).unwrap();
    assert_eq!(inplace, out, "{}: in place", name);

    let mut act = Activations::new().unwrap();
    let mut train = vec![0.0f32; x.len()];
    let tape = layer.forward_train(&mut ctx, b, l, &x, None, &mut train, &mut act).unwrap();
    assert_eq!(train, out, "{}: training forward without dropout", name);
    let mut dx = vec![0.0f32; x.len()];
    let mut dp = vec![0.0f32; n];
    layer.backward(&mut ctx, &tape, &d_out, Some(&mut dx), Some(&mut dp)).unwrap();
    let loss = |p: &[f64], x: &[f64]| dot(&dw, &s.forward(p, batch, len, x));
    assert_close(&format!("{}: d_src", name), &dx, &num_grad(&xw, H, |x| loss(&pw, x)), 5e-5);
    assert_close(&format!("{}: d_params", name), &dp, &num_grad(&pw, H, |p| loss(p, &xw)), 5e-5);

    // Dropout changes the training forward only.
    layer.set_dropout(0.5, 3).unwrap();
    let _ = layer.forward_train(&mut ctx, b, l, &x, None, &mut train, &mut act).unwrap();
    assert_ne!(train, out, "{}: dropout in training", name);
    layer.forward(&mut ctx, b, l, &x, None, &mut train).unwrap();
    assert_eq!(train, out, "{}: no dropout in inference", name);
}

#[test]
fn encoder_post_norm_relu() {
    let s = EncoderShape {
        d: 4,
        heads: 2,
        ff: 6,
        gelu: false,
        norm_first: false,
        eps: 1e-5,
        causal: false,
    };
    encoder_case("encoder post-norm relu", s, 13);
}

#[test]
fn encoder_pre_norm_gelu_causal() {
    let s = EncoderShape {
        d: 4,
        heads: 2,
        ff: 5,
        gelu: true,
        norm_first: true,
        eps: 1e-5,
        causal: true,
    };
    encoder_case("encoder pre-norm gelu causal", s, 14);
}

#[test]
fn layer_norm_and_backward() {
    // Rows far from 0 (1e3 ± 1): the sums in double keep their digits.
    let (rows, f) = (5usize, 7usize);
    let mut rng = Rng::new(15);
    let x: Vec<f32> = rng.floats(rows * f, 1.0).iter().map(|v| v + 1000.0).collect();
    let w: Vec<f32> = rng.floats(f, 0.5).iter().map(|v| v + 1.0).collect();
    let bias = rng.floats(f, 0.5);
    let d_y = rng.floats(rows * f, 1.0);
    let (xw, ww, bw, dw) = (wide(&x), wide(&w), wide(&bias), wide(&d_y));
    let eps = 1e-5f32;
    let e = eps as f64;
    let mut y = vec![0.0f32; x.len()];
    attn::layer_norm(rows as i64, f as i64, &x, &w, &bias, eps, &mut y).unwrap();
    assert_close("layer_norm: y", &y, &layer_norm(&xw, &ww, &bw, e), 1e-5);
    let mut inplace = x.clone();
    attn::layer_norm_in_place(rows as i64, f as i64, &mut inplace, &w, &bias, eps).unwrap();
    assert_eq!(inplace, y);

    let (mut dx, mut dwt, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; f], vec![0.0f32; f]);
    attn::layer_norm_backward(
        rows as i64,
        f as i64,
        &x,
        &w,
        eps,
        &d_y,
        Some(&mut dx),
        Some(&mut dwt),
        Some(&mut db),
    )
    .unwrap();
    // x is near 1000, so the differences step 1e-4 there (rounding 1e-13/1e-4).
    let g = num_grad(&xw, 1e-4, |x| dot(&dw, &layer_norm(x, &ww, &bw, e)));
    assert_close("layer_norm: d_x", &dx, &g, 2e-5);
    let g = num_grad(&ww, H, |w| dot(&dw, &layer_norm(&xw, w, &bw, e)));
    assert_close("layer_norm: d_weight", &dwt, &g, 2e-5);
    let g = num_grad(&bw, H, |b| dot(&dw, &layer_norm(&xw, &ww, b, e)));
    assert_close("layer_norm: d_bias", &db, &g, 2e-5);
}

#[test]
fn gelu_reference_is_erf() {
    // The encoder reference's erf against known values (A&S table 7.1).
    for (x, want) in [(0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0)] {
        assert!((erf(x) - want).abs() < 1e-9, "erf({}) = {}", x, erf(x));
        assert!((erf(-x) + want).abs() < 1e-9);
    }
}
