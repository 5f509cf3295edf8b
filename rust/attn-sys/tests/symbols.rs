//! The declarations against the library: every function declared links (its
//! address is taken, so a missing or misspelt symbol fails the link or the
//! load), the declared set is the set libattn.so.1 exports (the Debian
//! symbols file, when this crate sits in libattn's source tree), and the
//! enum values are attn.h's.

use attn_sys::*;
use std::collections::BTreeSet;
use std::ffi::CStr;

macro_rules! addresses {
    ($($f:ident),* $(,)?) => {
        [$((stringify!($f), $f as *const ())),*]
    };
}

/// Every function of `libattn.so.1`, by name and address.
fn table() -> Vec<(&'static str, *const ())> {
    addresses![
        attn_version_number,
        attn_version_string,
        attn_status_string,
        attn_last_error,
        attn_set_error,
        attn_context_create,
        attn_context_destroy,
        attn_context_set_num_threads,
        attn_mask_create,
        attn_mask_destroy,
        attn_mask_clear,
        attn_mask_set_kv_lengths,
        attn_mask_set_bool,
        attn_mask_set_bias,
        attn_sdpa_create,
        attn_sdpa_destroy,
        attn_sdpa_set_layout,
        attn_sdpa_set_scale,
        attn_sdpa_set_causal,
        attn_sdpa_forward,
        attn_mha_create,
        attn_mha_destroy,
        attn_mha_set_weights,
        attn_mha_set_causal,
        attn_mha_get_property,
        attn_mha_forward,
        attn_additive_create,
        attn_additive_destroy,
        attn_additive_set_weights,
        attn_additive_forward,
        attn_nadaraya_watson,
        attn_positional_encoding,
        attn_runtime_info,
        attn_sdpa_set_dropout,
        attn_dropout_keep_mask,
        attn_sdpa_backward,
        attn_activations_create,
        attn_activations_destroy,
        attn_mha_param_count,
        attn_mha_get_params,
        attn_mha_set_params,
        attn_mha_set_dropout,
        attn_mha_forward_train,
        attn_mha_backward,
        attn_additive_param_count,
        attn_additive_get_params,
        attn_additive_set_params,
        attn_additive_forward_train,
        attn_additive_backward,
        attn_nadaraya_watson_backward,
        attn_encoder_layer_create,
        attn_encoder_layer_destroy,
        attn_encoder_layer_set_causal,
        attn_encoder_layer_set_dropout,
        attn_encoder_layer_param_count,
        attn_encoder_layer_get_params,
        attn_encoder_layer_set_params,
        attn_encoder_layer_forward,
        attn_encoder_layer_backward,
        attn_layer_norm,
        attn_layer_norm_backward,
        attn_sdpa_set_window,
        attn_sdpa_set_softcap,
        attn_sdpa_set_alibi,
        attn_sdpa_clear_alibi,
        attn_mha_set_window,
        attn_mha_set_softcap,
        attn_mha_set_alibi,
        attn_mha_clear_alibi,
        attn_rope_create,
        attn_rope_destroy,
        attn_rope_set_linear_scaling,
        attn_rope_set_llama3_scaling,
        attn_rope_set_inv_freq,
        attn_rope_set_tables,
        attn_rope_apply,
        attn_mha_set_rope,
        attn_kv_cache_create,
        attn_kv_cache_destroy,
        attn_kv_cache_seq_open,
        attn_kv_cache_seq_close,
        attn_kv_cache_seq_fork,
        attn_kv_cache_seq_truncate,
        attn_kv_cache_seq_len,
        attn_kv_cache_append,
        attn_kv_cache_read,
        attn_sdpa_forward_cached,
        attn_mha_forward_cached,
        attn_encoder_layer_forward_cached,
        attn_merge_partials,
    ]
    .to_vec()
}

/// The names `pub fn` declares in src/lib.rs.
fn declared() -> BTreeSet<String> {
    include_str!("../src/lib.rs")
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub fn "))
        .map(|l| l.split('(').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_declared_function_links() {
    let table = table();
    let names: BTreeSet<String> = table.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names.len(), table.len(), "a name is listed twice");
    assert_eq!(names, declared(), "the table and src/lib.rs differ");
    let mut addresses: Vec<usize> = table.iter().map(|&(_, p)| p as usize).collect();
    assert!(addresses.iter().all(|&a| a != 0));
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), table.len(), "two functions share an address");
    // The loaded library is the one the headers describe: a 1.1 call answers.
    // SAFETY: NULL with size 0 is allowed; the call only returns a length.
    let needed = unsafe { attn_runtime_info(std::ptr::null_mut(), 0) };
    assert!(needed > 100, "attn_runtime_info says {} bytes", needed);
}

#[test]
fn declares_what_the_library_exports() {
    // debian/libattn1.symbols lists every exported function by version node;
    // libattn-mpi's are in another file. Outside libattn's tree (a copied
    // crate) there is nothing to compare with.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../debian/libattn1.symbols");
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{}: {}; only the 90 declarations are counted", path, err);
            assert_eq!(declared().len(), 90);
            return;
        }
    };
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim_start().split('@').next())
        .filter(|n| n.starts_with("attn_"))
        .map(str::to_string)
        .collect();
    assert_eq!(exported.len(), 90);
    assert_eq!(declared(), exported);
}

#[test]
fn constants_are_the_headers() {
    assert_eq!((ATTN_OK, ATTN_ERR_SHAPE_MISMATCH, ATTN_ERR_COMMUNICATION), (0, 3, 8));
    assert_eq!((ATTN_LAYOUT_BHSD, ATTN_LAYOUT_BSHD), (0, 1));
    assert_eq!((ATTN_CAUSAL_TOP_LEFT, ATTN_CAUSAL_BOTTOM_RIGHT), (1, 2));
    assert_eq!((ATTN_PROJ_Q, ATTN_PROJ_O), (0, 3));
    assert_eq!((ATTN_MHA_EMBED_DIM, ATTN_MHA_HEAD_DIM, ATTN_MHA_HAS_DROPOUT), (0, 3, 10));
    assert_eq!((ATTN_ACTIVATION_RELU, ATTN_ACTIVATION_GELU), (0, 1));
    assert_eq!((ATTN_ROPE_HALF, ATTN_ROPE_INTERLEAVED), (0, 1));
    // The library names the values the same way.
    for (status, name) in [
        (ATTN_OK, "ATTN_OK"),
        (ATTN_ERR_NULL_POINTER, "ATTN_ERR_NULL_POINTER"),
        (ATTN_ERR_INVALID_ARGUMENT, "ATTN_ERR_INVALID_ARGUMENT"),
        (ATTN_ERR_SHAPE_MISMATCH, "ATTN_ERR_SHAPE_MISMATCH"),
        (ATTN_ERR_SIZE_OVERFLOW, "ATTN_ERR_SIZE_OVERFLOW"),
        (ATTN_ERR_OUT_OF_MEMORY, "ATTN_ERR_OUT_OF_MEMORY"),
        (ATTN_ERR_UNSUPPORTED, "ATTN_ERR_UNSUPPORTED"),
        (ATTN_ERR_STATE, "ATTN_ERR_STATE"),
        (ATTN_ERR_COMMUNICATION, "ATTN_ERR_COMMUNICATION"),
    ] {
        // SAFETY: a static string for any value.
        let text = unsafe { CStr::from_ptr(attn_status_string(status)) }.to_str().unwrap();
        assert!(text.starts_with(name), "{} is {:?}", status, text);
    }
    // Property values as the library reads them.
    let mut mha = std::ptr::null_mut();
    let mut v = -1i64;
    // SAFETY: valid out-pointers; the layer is destroyed once.
    unsafe {
        assert_eq!(attn_mha_create(&mut mha, 8, 4, 2, 3, 5, 1), ATTN_OK);
        for (what, want) in [
            (ATTN_MHA_EMBED_DIM, 8),
            (ATTN_MHA_NUM_HEADS, 4),
            (ATTN_MHA_NUM_KV_HEADS, 2),
            (ATTN_MHA_HEAD_DIM, 2),
            (ATTN_MHA_KDIM, 3),
            (ATTN_MHA_VDIM, 5),
            (ATTN_MHA_BIAS, 1),
            (ATTN_MHA_CAUSAL, ATTN_CAUSAL_NONE as i64),
        ] {
            assert_eq!(attn_mha_get_property(mha, what, &mut v), ATTN_OK);
            assert_eq!(v, want, "property {}", what);
        }
        attn_mha_destroy(mha);
    }
}
