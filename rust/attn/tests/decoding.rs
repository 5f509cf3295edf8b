//! Decoding against float64: the KV cache's sequences, the cached forwards
//! of SDPA, MHA (with RoPE) and the encoder layer against one full causal
//! f64 forward over each whole sequence, and merge_partials against the
//! f64 attention over the union of the parts' keys.

mod common;

use attn::{
    Activation, Causal, Context, EncoderLayer, KvCache, Mask, Mha, Rope, RopeStyle, Sdpa, Status,
};
use common::{assert_close, inv_freq, wide, Attn, EncoderShape, MhaShape, Rng};

#[test]
fn kv_cache_sequences() {
    // 2 kv heads, keys of 3, values of 2, pages of 2 tokens, 4 pages.
    let (hkv, dqk, dv) = (2usize, 3usize, 2usize);
    let mut cache = KvCache::new(2, 3, 2, 2, 4).unwrap();
    let mut rng = Rng::new(20);
    let k = rng.floats(3 * hkv * dqk, 1.0);
    let v = rng.floats(3 * hkv * dv, 1.0);
    let s0 = cache.seq_open().unwrap();
    let s1 = cache.seq_open().unwrap();
    assert_eq!((s0, s1), (0, 1), "the smallest ids not in use");
    cache.append(s0, &k[..2 * hkv * dqk], &v[..2 * hkv * dv]).unwrap();
    cache.append(s0, &k[2 * hkv * dqk..], &v[2 * hkv * dv..]).unwrap();
    assert_eq!(cache.seq_len(s0).unwrap(), 3);
    assert_eq!(cache.seq_len(s1).unwrap(), 0);
    let (mut k2, mut v2) = (vec![0.0f32; k.len()], vec![0.0f32; v.len()]);
    cache.read(s0, 0, 3, Some(&mut k2), Some(&mut v2)).unwrap();
    assert_eq!((&k2, &v2), (&k, &v), "read gives back the appended bits");
    let mut v_mid = vec![0.0f32; hkv * dv];
    cache.read(s0, 1, 1, None, Some(&mut v_mid)).unwrap();
    assert_eq!(v_mid, v[hkv * dv..2 * hkv * dv]);

    // A fork shares the tokens; appending to it leaves the source alone.
    let s2 = cache.seq_fork(s0).unwrap();
    assert_eq!(cache.seq_len(s2).unwrap(), 3);
    let k_new = vec![5.0f32; hkv * dqk];
    let v_new = vec![6.0f32; hkv * dv];
    cache.append(s2, &k_new, &v_new).unwrap();
    cache.read(s0, 0, 3, Some(&mut k2), Some(&mut v2)).unwrap();
    assert_eq!((&k2, &v2), (&k, &v), "the source is unchanged by its fork's append");
    let mut k4 = vec![0.0f32; 4 * hkv * dqk];
    cache.read(s2, 0, 4, Some(&mut k4), None).unwrap();
    assert_eq!(&k4[..k.len()], &k[..]);
    assert_eq!(&k4[k.len()..], &k_new[..]);

    // Truncate rolls back; reading past the end is refused.
    cache.seq_truncate(s2, 1).unwrap();
    assert_eq!(cache.seq_len(s2).unwrap(), 1);
    let err = cache.read(s2, 0, 2, Some(&mut k4[..2 * hkv * dqk]), None).unwrap_err();
    assert_eq!(err.status(), Status::INVALID_ARGUMENT);
    assert!(err.message().starts_with("attn_kv_cache_read: "), "{}", err.message());

    // Out of pages: STATE and nothing appended; closing gives pages back.
    let big_k = vec![1.0f32; 8 * hkv * dqk];
    let big_v = vec![1.0f32; 8 * hkv * dv];
    let err = cache.append(s1, &big_k, &big_v).unwrap_err();
    assert_eq!(err.status(), Status::STATE, "{}", err);
    assert_eq!(cache.seq_len(s1).unwrap(), 0);
    cache.seq_close(s0).unwrap();
    cache.seq_close(s2).unwrap();
    cache.append(s1, &big_k, &big_v).unwrap();
    assert_eq!(cache.seq_len(s1).unwrap(), 8);
    assert_eq!(cache.seq_open().unwrap(), 0, "a closed id is handed out again");
    assert_eq!(cache.seq_len(s2).unwrap_err().status(), Status::INVALID_ARGUMENT);
}

/// Sequence s's new queries against its n cached tokens, in the reference:
/// bottom-right causal over [n_q, heads, d] rows (BSHD with batch 1).
fn cached_ref(a: &Attn, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (out, lse, _) = a.forward(q, k, v);
    // lse [1, heads, n_q] → [n_q, heads], as the cached call writes it.
    let mut t = vec![0.0; lse.len()];
    for h in 0..a.hq {
        for i in 0..a.lq {
            t[i * a.hq + h] = lse[h * a.lq + i];
        }
    }
    (out, t)
}

#[test]
fn sdpa_forward_cached_matches_full_causal() {
    let (hq, hkv, d, dv) = (4usize, 2usize, 3usize, 2usize);
    let lens = [5usize, 3]; // tokens per sequence, all cached
    let n_q = [2usize, 3]; // the last n_q of each are the new queries
    for (name, window, softcap) in [("plain", (-1, -1), 0.0), ("window softcap", (2, -1), 1.5)] {
        let mut op = Sdpa::new(1, hq as i64, hkv as i64, 1, 1, d as i64, dv as i64).unwrap();
        op.set_window(window.0, window.1).unwrap().set_softcap(softcap as f32).unwrap();
        let mut cache = KvCache::new(hkv as i64, d as i64, dv as i64, 2, 8).unwrap();
        let mut rng = Rng::new(21);
        let mut seqs = Vec::new();
        let (mut q, mut want_out, mut want_lse) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..2 {
            let k = rng.floats(lens[s] * hkv * d, 1.0);
            let v = rng.floats(lens[s] * hkv * dv, 1.0);
            let qs = rng.floats(n_q[s] * hq * d, 1.0);
            let id = cache.seq_open().unwrap();
            cache.append(id, &k, &v).unwrap();
            seqs.push(id);
            let mut a = Attn::new(1, hq, hkv, n_q[s], lens[s], d, dv);
            a.bshd = true;
            a.causal = 2;
            a.window = window;
            a.softcap = softcap;
            let (o, l) = cached_ref(&a, &wide(&qs), &wide(&k), &wide(&v));
            q.extend(qs);
            want_out.extend(o);
            want_lse.extend(l);
        }
        let cu_q = [0i64, 2, 5];
        let mut ctx = Context::new().unwrap();
        let mut out = vec![0.0f32; 5 * hq * dv];
        let mut lse = vec![0.0f32; 5 * hq];
        op.forward_cached(&mut ctx, &cache, &seqs, &cu_q, &q, &mut out, Some(&mut lse)).unwrap();
        assert_close(&format!("sdpa cached {}: out", name), &out, &want_out, 1e-5);
        assert_close(&format!("sdpa cached {}: lse", name), &lse, &want_lse, 1e-5);
    }
}

#[test]
fn mha_forward_cached_with_rope_matches_full_causal() {
    // E 16, 4 heads over 2 kv heads, RoPE (half pairs) on all 4 features of
    // a head; two sequences: a prompt of 3 and of 2 in one ragged call, then
    // one token per sequence per step.
    let (e, heads, kv_heads, hd) = (16usize, 4usize, 2usize, 4usize);
    let mut s = MhaShape::new(e, heads, kv_heads, e, e);
    s.causal = 2;
    s.rope = Some((inv_freq(10000.0, hd), true));
    let mut mha = Mha::new(16, 4, 2, 16, 16, true).unwrap();
    let mut rng = Rng::new(22);
    let params = rng.floats(mha.param_count(), 0.4);
    mha.set_params(&params).unwrap();
    mha.set_causal(Causal::BOTTOM_RIGHT).unwrap();
    let rope = Rope::new(4, 4, 10000.0, RopeStyle::HALF).unwrap();
    mha.set_rope(Some(&rope)).unwrap();
    drop(rope); // the layer keeps a copy

    let mut cache = KvCache::new(kv_heads as i64, hd as i64, hd as i64, 4, 8).unwrap();
    let seqs = [cache.seq_open().unwrap(), cache.seq_open().unwrap()];
    let total = [7usize, 6];
    let x: Vec<Vec<f32>> = total.iter().map(|&n| rng.floats(n * e, 1.0)).collect();
    let mut y: Vec<Vec<f32>> = total.iter().map(|&n| vec![0.0f32; n * e]).collect();
    let mut ctx = Context::new().unwrap();
    let prompt = [3usize, 2];
    let mut input: Vec<f32> = x[0][..3 * e].to_vec();
    input.extend_from_slice(&x[1][..2 * e]);
    let mut out = vec![0.0f32; 5 * e];
    mha.forward_cached(&mut ctx, &mut cache, &seqs, &[0, 3, 5], &input, &mut out).unwrap();
    y[0][..3 * e].copy_from_slice(&out[..3 * e]);
    y[1][..2 * e].copy_from_slice(&out[3 * e..]);
    let mut len = prompt;
    while len[0] < total[0] || len[1] < total[1] {
        // One token for every sequence not yet complete.
        let active: Vec<usize> = (0..2).filter(|&s| len[s] < total[s]).collect();
        let ids: Vec<i64> = active.iter().map(|&s| seqs[s]).collect();
        let cu: Vec<i64> = (0..=active.len() as i64).collect();
        let input: Vec<f32> =
            active.iter().flat_map(|&s| x[s][len[s] * e..(len[s] + 1) * e].to_vec()).collect();
        let mut out = vec![0.0f32; active.len() * e];
        mha.forward_cached(&mut ctx, &mut cache, &ids, &cu, &input, &mut out).unwrap();
        for (r, &s) in active.iter().enumerate() {
            y[s][len[s] * e..(len[s] + 1) * e].copy_from_slice(&out[r * e..(r + 1) * e]);
            len[s] += 1;
        }
    }
    let pw = wide(&params);
    for sq in 0..2 {
        assert_eq!(cache.seq_len(seqs[sq]).unwrap(), total[sq] as i64);
        let xw = wide(&x[sq]);
        let want = s.forward(&pw, 1, total[sq], total[sq], &xw, &xw, &xw);
        assert_close(&format!("mha cached rope: sequence {}", sq), &y[sq], &want, 1e-5);
        // And libattn's own full forward agrees.
        let n = total[sq] as i64;
        let mut full = vec![0.0f32; x[sq].len()];
        mha.forward(&mut ctx, 1, n, n, &x[sq], &x[sq], &x[sq], None, &mut full, None).unwrap();
        assert_close(&format!("mha full rope: sequence {}", sq), &full, &want, 1e-5);
    }
}

#[test]
fn encoder_forward_cached_matches_full_causal() {
    let s = EncoderShape {
        d: 4,
        heads: 2,
        ff: 6,
        gelu: true,
        norm_first: true,
        eps: 1e-5,
        causal: true,
    };
    let mut layer = EncoderLayer::new(4, 2, 6, Activation::GELU, true, 1e-5).unwrap();
    layer.set_causal(Causal::TOP_LEFT).unwrap();
    let mut rng = Rng::new(23);
    let params = rng.floats(layer.param_count(), 0.5);
    layer.set_params(&params).unwrap();
    let len = 5usize;
    let x = rng.floats(len * 4, 1.0);
    let mut cache = KvCache::new(2, 2, 2, 2, 4).unwrap();
    let seq = [cache.seq_open().unwrap()];
    let mut ctx = Context::new().unwrap();
    let mut y = vec![0.0f32; x.len()];
    let mut at = 0usize;
    for chunk in [2usize, 1, 2] {
        let rows = at * 4..(at + chunk) * 4;
        let cu = [0i64, chunk as i64];
        layer
            .forward_cached(&mut ctx, &mut cache, &seq, &cu, &x[rows.clone()], &mut y[rows])
            .unwrap();
        at += chunk;
    }
    let want = s.forward(&wide(&params), 1, len, &wide(&x));
    assert_close("encoder cached: chunks 2, 1, 2", &y, &want, 1e-5);
}

#[test]
fn merge_partials_is_attention_over_the_union() {
    // Keys split into three disjoint sets; each part is an SDPA over its
    // keys; the merge is compared with the f64 attention over all 9 keys.
    let (lq, d, dv) = (3usize, 4usize, 2usize);
    let bounds = [0usize, 3, 7, 9];
    let mut rng = Rng::new(24);
    let q = rng.floats(lq * d, 1.0);
    let k = rng.floats(9 * d, 1.0);
    let v = rng.floats(9 * dv, 1.0);
    let mut ctx = Context::new().unwrap();
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for p in 0..3 {
        let n = bounds[p + 1] - bounds[p];
        let op = Sdpa::new(1, 1, 1, lq as i64, n as i64, d as i64, dv as i64).unwrap();
        let mut out = vec![0.0f32; lq * dv];
        let mut lse = vec![0.0f32; lq];
        let (kp, vp) =
            (&k[bounds[p] * d..bounds[p + 1] * d], &v[bounds[p] * dv..bounds[p + 1] * dv]);
        op.forward(&mut ctx, &q, kp, vp, None, &mut out, None, Some(&mut lse)).unwrap();
        outs.push(out);
        lses.push(lse);
    }
    // A fourth part that saw no key: lse −inf, and its out is never read.
    let empty = Sdpa::new(1, 1, 1, lq as i64, 2, d as i64, dv as i64).unwrap();
    let zero = [0i64];
    let mut none = Mask::new().unwrap();
    none.set_kv_lengths(&zero, 1).unwrap();
    let mut out = vec![0.0f32; lq * dv];
    let mut lse = vec![0.0f32; lq];
    empty
        .forward(
            &mut ctx,
            &q,
            &k[..2 * d],
            &v[..2 * dv],
            Some(&none),
            &mut out,
            None,
            Some(&mut lse),
        )
        .unwrap();
    assert!(lse.iter().all(|&l| l == f32::NEG_INFINITY));
    out.iter_mut().for_each(|o| *o = f32::NAN);
    outs.push(out);
    lses.push(lse);

    let o: Vec<&[f32]> = outs.iter().map(|x| x.as_slice()).collect();
    let l: Vec<&[f32]> = lses.iter().map(|x| x.as_slice()).collect();
    let mut merged = vec![0.0f32; lq * dv];
    let mut merged_lse = vec![0.0f32; lq];
    attn::merge_partials(lq as i64, dv as i64, &o, &l, &mut merged, &mut merged_lse).unwrap();
    let a = Attn::new(1, 1, 1, lq, 9, d, dv);
    let (want, want_lse, _) = a.forward(&wide(&q), &wide(&k), &wide(&v));
    assert_close("merge_partials: out", &merged, &want, 1e-5);
    assert_close("merge_partials: lse", &merged_lse, &want_lse, 1e-5);
}
