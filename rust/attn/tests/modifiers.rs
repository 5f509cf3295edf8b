//! The score modifiers (sliding window, softcap, ALiBi) on SDPA and on the
//! multi-head layer against the float64 reference, Press et al.'s default
//! slopes against their formula, clearing, and the setters' refusals.

mod common;

use attn::{Causal, Context, Mha, MhaProperty, Sdpa, Status};
use common::{assert_close, wide, Attn, MhaShape, Rng};

fn forward(op: &Sdpa, a: &Attn, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let q = rng.floats(a.b * a.hq * a.lq * a.dqk, 1.5);
    let k = rng.floats(a.b * a.hkv * a.lkv * a.dqk, 1.5);
    let v = rng.floats(a.b * a.hkv * a.lkv * a.dv, 1.0);
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; op.out_len()];
    op.forward(&mut ctx, &q, &k, &v, None, &mut out, None, None).unwrap();
    (out, a.forward(&wide(&q), &wide(&k), &wide(&v)).0)
}

/// Press et al.'s get_slopes (ofirpress/attention_with_linear_biases).
fn press_slopes(n: usize) -> Vec<f64> {
    let pow2 = |n: usize| -> Vec<f64> {
        (0..n).map(|h| 2f64.powf(-8.0 * (h + 1) as f64 / n as f64)).collect()
    };
    if n.is_power_of_two() {
        return pow2(n);
    }
    let c = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let mut s = pow2(c);
    s.extend(pow2(2 * c).into_iter().step_by(2).take(n - c));
    s
}

#[test]
fn sdpa_window_softcap_alibi() {
    // HF's sliding_window = 3 with causal: (left, right) = (2, 0).
    let mut a = Attn::new(1, 2, 1, 6, 6, 4, 3);
    a.causal = 1;
    a.window = (2, 0);
    let mut op = Sdpa::new(1, 2, 1, 6, 6, 4, 3).unwrap();
    op.set_causal(Causal::TOP_LEFT).unwrap().set_window(2, 0).unwrap();
    let (got, want) = forward(&op, &a, 40);
    assert_close("sdpa: causal sliding window 3", &got, &want, 1e-5);

    // A softcap small enough to matter (logits up to ~4.5 → cap 1).
    a.softcap = 1.0;
    op.set_softcap(1.0).unwrap();
    let (got, want) = forward(&op, &a, 40);
    assert_close("sdpa: window + softcap 1", &got, &want, 1e-5);

    // ALiBi with Press et al.'s slopes (None), 6 heads (not a power of 2),
    // without causal: |p − j| also lowers keys after p; bottom-right p.
    let mut a = Attn::new(1, 6, 2, 4, 7, 2, 2);
    a.alibi = Some(press_slopes(6));
    let mut op = Sdpa::new(1, 6, 2, 4, 7, 2, 2).unwrap();
    op.set_alibi(None).unwrap();
    let (got, want) = forward(&op, &a, 41);
    assert_close("sdpa: default ALiBi slopes, 6 heads", &got, &want, 1e-5);
    assert_eq!(press_slopes(6), [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);

    // Cleared, the op is a plain one again: the same bits as a new op.
    op.clear_alibi().unwrap();
    let plain = Sdpa::new(1, 6, 2, 4, 7, 2, 2).unwrap();
    let (got, _) = forward(&op, &a, 41);
    let (fresh, _) = forward(&plain, &a, 41);
    assert_eq!(got, fresh);
}

#[test]
fn mha_modifiers() {
    let (batch, len, e) = (2usize, 5usize, 8usize);
    let mut s = MhaShape::new(e, 4, 2, e, e);
    s.causal = 2;
    s.window = (1, -1);
    s.softcap = 2.0;
    s.alibi = Some(vec![0.3, 0.2, 0.1, 0.05]);
    let mut mha = Mha::new(8, 4, 2, 8, 8, true).unwrap();
    let mut rng = Rng::new(42);
    let params = rng.floats(mha.param_count(), 0.6);
    mha.set_params(&params).unwrap();
    mha.set_causal(Causal::BOTTOM_RIGHT).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_MODIFIERS).unwrap(), 0);
    mha.set_window(1, -1).unwrap().set_softcap(2.0).unwrap();
    mha.set_alibi(Some(&[0.3, 0.2, 0.1, 0.05])).unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_MODIFIERS).unwrap(), 1);
    assert_eq!(mha.property(MhaProperty::CAUSAL).unwrap(), Causal::BOTTOM_RIGHT.0 as i64);
    let x = rng.floats(batch * len * e, 1.0);
    let mut ctx = Context::new().unwrap();
    let mut out = vec![0.0f32; x.len()];
    let (b, l) = (batch as i64, len as i64);
    mha.forward(&mut ctx, b, l, l, &x, &x, &x, None, &mut out, None).unwrap();
    let (pw, xw) = (wide(&params), wide(&x));
    assert_close(
        "mha: window softcap alibi",
        &out,
        &s.forward(&pw, batch, len, len, &xw, &xw, &xw),
        1e-5,
    );

    // Off again: the plain causal layer.
    mha.set_window(-1, -1).unwrap().set_softcap(0.0).unwrap().clear_alibi().unwrap();
    assert_eq!(mha.property(MhaProperty::HAS_MODIFIERS).unwrap(), 0);
    mha.forward(&mut ctx, b, l, l, &x, &x, &x, None, &mut out, None).unwrap();
    s.window = (-1, -1);
    s.softcap = 0.0;
    s.alibi = None;
    assert_close(
        "mha: modifiers cleared",
        &out,
        &s.forward(&pw, batch, len, len, &xw, &xw, &xw),
        1e-5,
    );
}

#[test]
fn modifier_setters_refuse_bad_values() {
    let mut op = Sdpa::new(1, 2, 2, 3, 3, 2, 2).unwrap();
    let cases = [
        (op.set_window(-2, 0).map(|_| ()).unwrap_err(), "attn_sdpa_set_window: "),
        (op.set_softcap(-1.0).map(|_| ()).unwrap_err(), "attn_sdpa_set_softcap: "),
        (op.set_alibi(Some(&[0.5, f32::NAN])).map(|_| ()).unwrap_err(), "attn_sdpa_set_alibi: "),
    ];
    for (err, prefix) in cases {
        assert_eq!(err.status(), Status::INVALID_ARGUMENT, "{}", err);
        assert!(err.message().starts_with(prefix), "{}", err.message());
    }
    // Slopes of the wrong length never reach libattn.
    let err = op.set_alibi(Some(&[0.5])).map(|_| ()).unwrap_err();
    assert_eq!(err.status(), Status::SHAPE_MISMATCH);
    assert_eq!(err.message(), "Sdpa::set_alibi: slopes has 1 elements, the shapes need 2");
    let mut mha = Mha::new(4, 2, 2, 4, 4, false).unwrap();
    let err = mha.set_alibi(Some(&[0.5; 3])).map(|_| ()).unwrap_err();
    assert_eq!(err.message(), "Mha::set_alibi: slopes has 3 elements, the shapes need 2");
    assert_eq!(mha.property(MhaProperty::HAS_MODIFIERS).unwrap(), 0, "unchanged on failure");
}
