//! Error paths of the 1.1 calls: slices of the wrong length are refused by
//! the wrapper before any C call (status SHAPE_MISMATCH, a message naming
//! the function and the tensor, outputs untouched); libattn's own refusals
//! carry its status and attn_last_error() text; tapes are checked.

use attn::{
    Activation, Activations, Additive, Causal, Context, EncoderLayer, Error, KvCache, Mha, Rope,
    RopeStyle, Sdpa, Status,
};

fn shape(err: Error, message: &str) {
    assert_eq!(err.status(), Status::SHAPE_MISMATCH, "{}", err);
    assert_eq!(err.message(), message);
    assert!(err.to_string().contains("ATTN_ERR_SHAPE_MISMATCH"), "{}", err);
}

fn libattn(err: Error, status: Status, prefix: &str) {
    assert_eq!(err.status(), status, "{}", err);
    assert!(
        err.message().starts_with(prefix),
        "{:?} does not start with {:?}",
        err.message(),
        prefix
    );
    assert!(err.message().len() > prefix.len(), "a detail follows the function's name");
}

#[test]
fn wrong_lengths_never_reach_libattn() {
    let mut ctx = Context::new().unwrap();
    let op = Sdpa::new(1, 2, 1, 3, 4, 2, 2).unwrap();
    let (q, k, v) = (vec![0.1f32; 12], vec![0.2f32; 8], vec![0.3f32; 8]);
    let (out, lse, d_out) = (vec![0.0f32; 12], vec![0.0f32; 6], vec![1.0f32; 12]);
    let mut d_q = vec![-7.0f32; 11];
    let err = op
        .backward(&mut ctx, &q, &k, &v, None, &out, &lse, &d_out, Some(&mut d_q), None, None)
        .unwrap_err();
    shape(err, "Sdpa::backward: d_q has 11 elements, the shapes need 12");
    assert!(d_q.iter().all(|&x| x == -7.0), "untouched");
    let err = op.backward(&mut ctx, &q, &k, &v, None, &out, &lse[..5], &d_out, None, None, None);
    shape(err.unwrap_err(), "Sdpa::backward: lse has 5 elements, the shapes need 6");
    let mut keep = vec![0u8; 23];
    shape(
        op.dropout_keep_mask(&mut keep).unwrap_err(),
        "Sdpa::dropout_keep_mask: keep has 23 elements, the shapes need 24",
    );

    let cache = KvCache::new(1, 2, 2, 4, 2).unwrap();
    let mut o = vec![0.0f32; 4];
    let err = op.forward_cached(&mut ctx, &cache, &[0, 1], &[0, 1], &q[..4], &mut o, None);
    shape(err.unwrap_err(), "Sdpa::forward_cached: cu_q has 2 elements, seqs (2) needs 3");
    let err = op.forward_cached(&mut ctx, &cache, &[0], &[0, 2], &q[..8], &mut o, None);
    shape(err.unwrap_err(), "Sdpa::forward_cached: out has 4 elements, the shapes need 8");

    let mut cache = KvCache::new(2, 3, 2, 4, 2).unwrap();
    let s = cache.seq_open().unwrap();
    shape(
        cache.append(s, &[0.0; 7], &[0.0; 4]).unwrap_err(),
        "KvCache::append: k has 7 elements, not a multiple of heads_kv·dim_qk = 6",
    );
    shape(
        cache.append(s, &[0.0; 12], &[0.0; 5]).unwrap_err(),
        "KvCache::append: v has 5 elements, the shapes need 8",
    );
    assert_eq!(cache.seq_len(s).unwrap(), 0, "nothing appended");
    let mut kr = vec![0.0f32; 5];
    shape(
        cache.read(s, 0, 1, Some(&mut kr), None).unwrap_err(),
        "KvCache::read: k has 5 elements, the shapes need 6",
    );

    let (a, b) = ([0.0f32; 4], [0.0f32; 2]);
    let (mut mo, mut ml) = ([9.0f32; 4], [9.0f32; 2]);
    let err = attn::merge_partials(2, 2, &[&a, &a], &[&b], &mut mo, &mut ml).unwrap_err();
    shape(err, "merge_partials: 2 outs but 1 lses");
    let err = attn::merge_partials(2, 2, &[&a, &a[..3]], &[&b, &b], &mut mo, &mut ml).unwrap_err();
    shape(err, "merge_partials: outs[1] has 3 elements, the shapes need 4");
    assert_eq!((mo, ml), ([9.0; 4], [9.0; 2]), "untouched");

    let mut y = [0.0f32; 5];
    let err = attn::layer_norm(2, 3, &[0.0; 6], &[1.0; 3], &[0.0; 3], 1e-5, &mut y).unwrap_err();
    shape(err, "layer_norm: y has 5 elements, the shapes need 6");
    let mut dwt = [0.0f32; 2];
    let err = attn::layer_norm_backward(
        2,
        3,
        &[0.0; 6],
        &[1.0; 3],
        1e-5,
        &[0.0; 6],
        None,
        Some(&mut dwt),
        None,
    );
    shape(err.unwrap_err(), "layer_norm_backward: d_weight has 2 elements, the shapes need 3");

    let mut dk = [0.0f32; 1];
    let err = attn::nadaraya_watson_backward(
        &mut ctx,
        &[1.0],
        &[0.0, 2.0],
        &[1.0, 3.0],
        1.0,
        &[1.0],
        None,
        Some(&mut dk),
        None,
        None,
    );
    shape(err.unwrap_err(), "nadaraya_watson_backward: d_keys has 1 elements, the shapes need 2");

    let mut rope = Rope::new(8, 4, 10000.0, RopeStyle::HALF).unwrap();
    shape(
        rope.set_tables(&[1.0; 6], &[0.0; 5], 3).map(|_| ()).unwrap_err(),
        "Rope::set_tables: sin has 5 elements, the shapes need 6",
    );
    shape(
        rope.set_inv_freq(&[1.0; 3]).map(|_| ()).unwrap_err(),
        "Rope::set_inv_freq: inv_freq has 3 elements, the shapes need 2",
    );
    let mut x = [0.5f32; 15];
    let err =
        rope.apply(&mut ctx, attn::Layout::BHSD, 1, 2, 1, &mut x, None, 0, false).unwrap_err();
    shape(err, "Rope::apply: x has 15 elements, the shapes need 16");

    let mha = Mha::new(4, 2, 1, 4, 4, true).unwrap();
    let mut p = vec![0.0f32; mha.param_count() - 1];
    shape(
        mha.get_params(&mut p).unwrap_err(),
        &format!(
            "Mha::get_params: params has {} elements, the shapes need {}",
            p.len(),
            p.len() + 1
        ),
    );
}

#[test]
fn tapes_are_checked() {
    let mut ctx = Context::new().unwrap();
    let mut mha = Mha::new(2, 1, 1, 2, 2, false).unwrap();
    mha.set_params(&[
        1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0,
    ])
    .unwrap();
    let x = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6];
    let mut out = [0.0f32; 6];
    let mut act = Activations::new().unwrap();
    let tape =
        mha.forward_train(&mut ctx, 1, 3, 3, &x, &x, &x, None, &mut out, None, &mut act).unwrap();

    // A tape of another kind of layer: refused by the wrapper.
    let mut add = Additive::new(2, 2, 2).unwrap();
    add.set_weights(&[0.0; 4], &[0.0; 4], &[1.0; 2]).unwrap();
    let err = add.backward(&mut ctx, &tape, &[0.0; 6], None, None, None, None).unwrap_err();
    assert_eq!(err.status(), Status::STATE);
    assert_eq!(err.message(), "Additive::backward: the tape was filled by Mha::forward_train");

    // Another layer of the same kind, and the same layer changed since:
    // refused by libattn.
    let mut other = Mha::new(2, 1, 1, 2, 2, false).unwrap();
    other.set_params(&mha.params().unwrap()).unwrap();
    let mut dx = [-7.0f32; 6];
    let err =
        other.backward(&mut ctx, &tape, &[1.0; 6], Some(&mut dx), None, None, None).unwrap_err();
    libattn(err, Status::STATE, "attn_mha_backward: ");
    assert!(dx.iter().all(|&v| v == -7.0), "untouched");
    mha.backward(&mut ctx, &tape, &[1.0; 6], Some(&mut dx), None, None, None).unwrap();
    mha.set_causal(Causal::TOP_LEFT).unwrap();
    let err =
        mha.backward(&mut ctx, &tape, &[1.0; 6], Some(&mut dx), None, None, None).unwrap_err();
    libattn(err, Status::STATE, "attn_mha_backward: ");

    // Not self-attention: refused before libattn.
    let cross = Mha::new(2, 1, 1, 3, 2, false).unwrap();
    let err = cross.backward_self_attention(&mut ctx, &tape, &[1.0; 6], &mut dx, None).unwrap_err();
    assert_eq!(err.status(), Status::SHAPE_MISMATCH);
    let want = "Mha::backward_self_attention: not self-attention: \
                len_q 3, len_kv 3, embed_dim 2, kdim 3, vdim 2";
    assert_eq!(err.message(), want);
}

#[test]
fn libattn_refusals_carry_status_and_message() {
    let mut ctx = Context::new().unwrap();
    let mut cache = KvCache::new(1, 2, 2, 2, 2).unwrap();
    libattn(
        cache.append(3, &[0.0; 2], &[0.0; 2]).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_kv_cache_append: ",
    );
    libattn(cache.seq_close(0).unwrap_err(), Status::INVALID_ARGUMENT, "attn_kv_cache_seq_close: ");
    libattn(cache.seq_fork(5).unwrap_err(), Status::INVALID_ARGUMENT, "attn_kv_cache_seq_fork: ");
    let s = cache.seq_open().unwrap();
    libattn(
        cache.seq_truncate(s, 1).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_kv_cache_seq_truncate: ",
    );
    libattn(
        KvCache::new(0, 2, 2, 2, 2).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_kv_cache_create: ",
    );

    // The op's heads and dims must be the cache's.
    let op = Sdpa::new(1, 2, 2, 1, 1, 2, 2).unwrap();
    let mut out = [0.0f32; 4];
    let err = op.forward_cached(&mut ctx, &cache, &[s], &[0, 1], &[0.0; 4], &mut out, None);
    libattn(err.unwrap_err(), Status::SHAPE_MISMATCH, "attn_sdpa_forward_cached: ");

    // An encoder layer: parameters unset, then not causal for a cache.
    let mut layer = EncoderLayer::new(2, 1, 3, Activation::RELU, false, 1e-5).unwrap();
    let mut y = [0.0f32; 2];
    libattn(
        layer.forward(&mut ctx, 1, 1, &[0.0; 2], None, &mut y).unwrap_err(),
        Status::STATE,
        "attn_encoder_layer_forward: ",
    );
    let mut p = vec![0.0f32; layer.param_count()];
    libattn(
        layer.get_params(&mut p).unwrap_err(),
        Status::STATE,
        "attn_encoder_layer_get_params: ",
    );
    layer.set_params(&vec![0.1f32; layer.param_count()]).unwrap();
    let err = layer.forward_cached(&mut ctx, &mut cache, &[s], &[0, 1], &[0.0; 2], &mut y);
    libattn(err.unwrap_err(), Status::STATE, "attn_encoder_layer_forward_cached: ");
    assert_eq!(cache.seq_len(s).unwrap(), 0, "the cache is unchanged on failure");
    libattn(
        EncoderLayer::new(3, 2, 4, Activation::GELU, true, 1e-5).unwrap_err(),
        Status::SHAPE_MISMATCH,
        "attn_encoder_layer_create: ",
    );
    libattn(
        layer.set_dropout(1.0, 0).map(|_| ()).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_encoder_layer_set_dropout: ",
    );
    libattn(
        Rope::new(4, 3, 10000.0, RopeStyle::HALF).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_rope_create: ",
    );
    libattn(
        attn::layer_norm(1, 2, &[0.0; 2], &[1.0; 2], &[0.0; 2], -1.0, &mut y).unwrap_err(),
        Status::INVALID_ARGUMENT,
        "attn_layer_norm: ",
    );
    let err = attn::merge_partials(1, 0, &[&[]], &[&[0.0]], &mut [], &mut [0.0]).unwrap_err();
    libattn(err, Status::INVALID_ARGUMENT, "attn_merge_partials: ");
    let err = attn::merge_partials(1, 1, &[], &[], &mut [0.0], &mut [0.0]).unwrap_err();
    libattn(err, Status::INVALID_ARGUMENT, "attn_merge_partials: ");
}

#[test]
fn runtime_info_and_properties() {
    assert!(attn::version_number() >= 10100, "the 1.1 calls need libattn 1.1");
    let info = attn::runtime_info();
    let version = format!("version: {}\n", attn::version());
    assert!(info.starts_with(&version), "{}", info);
    for key in ["blas:", "cpu:", "threads:", "schedule:", "advice:"] {
        assert!(info.lines().any(|l| l.starts_with(key)), "no {} line in\n{}", key, info);
    }
    let mha = Mha::new(12, 4, 2, 5, 7, true).unwrap();
    use attn::MhaProperty as P;
    let props = [
        (P::EMBED_DIM, 12),
        (P::NUM_HEADS, 4),
        (P::NUM_KV_HEADS, 2),
        (P::HEAD_DIM, 3),
        (P::KDIM, 5),
        (P::VDIM, 7),
        (P::BIAS, 1),
        (P::CAUSAL, 0),
        (P::HAS_ROPE, 0),
    ];
    for (what, want) in props {
        assert_eq!(mha.property(what).unwrap(), want, "{:?}", what);
    }
    libattn(mha.property(P(99)).unwrap_err(), Status::INVALID_ARGUMENT, "attn_mha_get_property: ");
}
