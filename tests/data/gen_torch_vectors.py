#!/usr/bin/python3
"""Golden vectors of torch.nn.MultiheadAttention for tests/test_mha_torch.c.

For each configuration in CONFIGS below this script builds
torch.nn.MultiheadAttention(embed_dim, num_heads, bias=..., kdim=..., vdim=...,
batch_first=True) with random weights and biases (fixed seeds), runs it with
need_weights=True, average_attn_weights=False, and writes the folder
tests/data/mha/<name>/ holding

  case.json   the configuration, how libattn expresses its masks, and which
              file holds which tensor (with shape and dtype);
  *.bin       raw little-endian tensors: the weights as libattn's
              attn_mha_set_weights takes them (Wq, Wk, Wv: the row blocks of
              in_proj_weight, or q/k/v_proj_weight when kdim/vdim differ from
              embed_dim; Wo: out_proj.weight; bq, bk, bv: in_proj_bias in
              three; bo: out_proj.bias), the inputs query/key/value (float32),
              the masks in libattn's terms (kv lengths int64, keep mask uint8,
              additive bias float32) and the outputs out [batch, len_q,
              embed_dim] and weights [batch, num_heads, len_q, len_kv].

PyTorch's masks are translated as follows: a right-padded key_padding_mask is
libattn's per-batch kv lengths; a bool attn_mask (True = masked out) is the
keep mask NOT attn_mask, shaped [1, 1, len_q, len_kv] when 2-D and
[batch, num_heads, len_q, len_kv] when 3-D ([batch*num_heads, ...] in torch);
a float attn_mask is an additive bias of the same shapes; a causal mask
(upper-triangular True / -inf given to torch) is attn_mha_set_causal with
ATTN_CAUSAL_TOP_LEFT (enum value 1). No query row ever sees no key (PyTorch
gives NaN there, libattn zeros). Every torch result is checked against a
float64 NumPy recomputation from the same weights (max relative error, as
|t - r| / (|r| + max|r| of the row), below 1e-5) before it is written.

Grouped-query attention (num_kv_heads < num_heads) has no nn.MultiheadAttention
equivalent in torch 1.13 and is not covered here.

Regenerate (Debian's python3-torch 1.13 and python3-numpy), from the source
root (the script imports golden_io.py, beside it, for the shared helpers):

    /usr/bin/python3 tests/data/gen_torch_vectors.py

It replaces tests/data/mha/ entirely.
"""
import numpy as np
import torch

from golden_io import case_folder, generate, keep_one_key, key_padding_mask, mha_visibility, \
    out_dir, seed_all, write_bin, write_case, write_masks

OUT_DIR = out_dir("mha")
BASE_SEED = 20240611
ATTN_CAUSAL_NONE, ATTN_CAUSAL_TOP_LEFT = 0, 1

# name, embed_dim, num_heads, kdim, vdim, bias, batch, len_q, len_kv, self_attention,
# and the masks, which may combine: kv_lengths (one per batch row: key_padding_mask),
# attn_mask ("bool2d", "bool3d", "float2d", "float3d") and causal (given to torch as
# a bool upper triangle, or as a float -inf one with causal_float).
CONFIGS = [
    dict(name="self_bias", E=16, H=2, B=2, Lq=5, self_attn=True, bias=True),
    dict(name="self_nobias", E=24, H=3, B=1, Lq=7, self_attn=True, bias=False),
    dict(name="cross_bias", E=16, H=4, B=2, Lq=4, Lkv=7, bias=True),
    dict(name="cross_nobias", E=32, H=4, B=3, Lq=6, Lkv=3, bias=False),
    dict(name="kdim_vdim_bias", E=16, H=2, kdim=12, vdim=20, B=2, Lq=5, Lkv=6, bias=True),
    dict(name="kdim_vdim_nobias", E=24, H=4, kdim=8, vdim=32, B=1, Lq=3, Lkv=9, bias=False),
    dict(name="key_padding", E=16, H=2, B=3, Lq=5, Lkv=7, bias=True, kv_lengths=[7, 4, 1]),
    dict(name="bool_mask_2d", E=16, H=4, B=2, Lq=6, self_attn=True, bias=True, attn_mask="bool2d"),
    dict(name="bool_mask_3d", E=24, H=3, B=2, Lq=4, Lkv=8, bias=True, attn_mask="bool3d"),
    dict(name="float_mask_2d", E=16, H=2, B=2, Lq=5, Lkv=7, bias=True, attn_mask="float2d"),
    dict(name="float_mask_3d", E=32, H=4, B=2, Lq=3, Lkv=6, kdim=20, vdim=12, bias=False,
         attn_mask="float3d"),
    dict(name="causal_self", E=32, H=4, B=2, Lq=8, self_attn=True, bias=True, causal=True),
    dict(name="causal_cross", E=16, H=2, B=1, Lq=5, Lkv=8, bias=False, causal=True,
         causal_float=True),
    dict(name="key_padding_causal", E=16, H=2, B=3, Lq=7, self_attn=True, bias=True,
         causal=True, kv_lengths=[7, 5, 2]),
    dict(name="key_padding_bool_3d", E=24, H=3, B=2, Lq=5, Lkv=9, bias=True,
         attn_mask="bool3d", kv_lengths=[6, 9]),
    dict(name="key_padding_float_2d", E=16, H=4, B=3, Lq=4, Lkv=6, kdim=10, vdim=14,
         bias=True, attn_mask="float2d", kv_lengths=[3, 6, 5]),
]


def rel_error(got, ref):
    """max |got - ref| / (|ref| + max |ref| over the last axis)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    row_max = np.max(np.abs(ref), axis=-1, keepdims=True)
    return float(np.max(np.abs(got - ref) / (np.abs(ref) + row_max)))


def reference(query, key, value, w, H, allowed, bias_add):
    """float64 nn.MultiheadAttention: allowed [B,H,Lq,Lkv] bool, bias_add the same, float."""
    f = lambda t: t.detach().double().numpy() if t is not None else None
    x_q, x_k, x_v = f(query), f(key), f(value)
    proj = lambda x, wt, b: x @ f(wt).T + (f(b) if b is not None else 0.0)
    Q, K, V = proj(x_q, w["Wq"], w["bq"]), proj(x_k, w["Wk"], w["bk"]), proj(x_v, w["Wv"], w["bv"])
    B, Lq, E = Q.shape
    Lkv, D = K.shape[1], E // H
    split = lambda t, L: t.reshape(B, L, H, D).transpose(0, 2, 1, 3)
    Qh, Kh, Vh = split(Q, Lq), split(K, Lkv), split(V, Lkv)
    logits = Qh @ Kh.transpose(0, 1, 3, 2) / np.sqrt(D) + bias_add
    logits = np.where(allowed, logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=-1, keepdims=True)
    A = (p @ Vh).transpose(0, 2, 1, 3).reshape(B, Lq, E)
    return proj(A, w["Wo"], w["bo"]), p


def make_case(index, cfg):
    rng = seed_all(BASE_SEED + index)
    name, E, H, B, Lq, bias = cfg["name"], cfg["E"], cfg["H"], cfg["B"], cfg["Lq"], cfg["bias"]
    self_attn = cfg.get("self_attn", False)
    Lkv = Lq if self_attn else cfg["Lkv"]
    kdim, vdim = cfg.get("kdim", E), cfg.get("vdim", E)
    assert not self_attn or (kdim == E and vdim == E)
    mha = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    mha.eval()
    with torch.no_grad():  # random biases: PyTorch initialises them to zero
        for p in mha.parameters():
            if p.dim() == 1:
                p.uniform_(-0.5, 0.5)
    if mha._qkv_same_embed_dim:
        Wq, Wk, Wv = mha.in_proj_weight.detach().chunk(3, dim=0)
    else:
        Wq, Wk, Wv = (mha.q_proj_weight.detach(), mha.k_proj_weight.detach(),
                      mha.v_proj_weight.detach())
    bq = bk = bv = bo = None
    if bias:
        bq, bk, bv = mha.in_proj_bias.detach().chunk(3, dim=0)
        bo = mha.out_proj.bias.detach()
    w = dict(Wq=Wq, Wk=Wk, Wv=Wv, Wo=mha.out_proj.weight.detach(), bq=bq, bk=bk, bv=bv, bo=bo)

    query = torch.randn(B, Lq, E)
    key = query if self_attn else torch.randn(B, Lkv, kdim)
    value = query if self_attn else torch.randn(B, Lkv, vdim)

    # Masks, built as what is allowed (libattn's polarity) and an additive bias.
    vis = mha_visibility(cfg, B, Lq, Lkv)  # allowed by causal and key padding
    allowed = np.repeat(vis[:, None], H, axis=1)  # [B, H, Lq, Lkv]
    bias_add = np.zeros(allowed.shape)
    causal, kv_lengths, kind = cfg.get("causal", False), cfg.get("kv_lengths"), cfg.get("attn_mask")
    attn_mask_t = None  # what torch gets as attn_mask
    libattn_mask = None  # the bool keep mask or float bias libattn gets: (kind, array)
    if kind is not None:
        shape = (1, 1, Lq, Lkv) if kind.endswith("2d") else (B, H, Lq, Lkv)
        # one key of each row that is certainly visible, so that no row is empty
        guarantee = keep_one_key(vis, H, kind.endswith("2d"), rng)
        masked_out = (torch.rand(shape) < 0.35).numpy() & ~guarantee
        if kind.startswith("bool"):
            libattn_mask = ("bool", (~masked_out).astype(np.uint8))
            allowed &= ~masked_out
            tm = torch.from_numpy(masked_out)
        else:
            fb = torch.randn(shape).numpy().astype(np.float32)
            fb[masked_out] = -np.inf
            libattn_mask = ("bias", fb)
            bias_add = bias_add + fb.astype(np.float64)
            allowed &= ~masked_out
            tm = torch.from_numpy(fb)
        attn_mask_t = tm.reshape(Lq, Lkv) if kind.endswith("2d") else tm.reshape(B * H, Lq, Lkv)
    if causal:  # torch gets the upper triangle, merged into the attn_mask
        upper = torch.triu(torch.ones(Lq, Lkv, dtype=torch.bool), diagonal=1)
        if attn_mask_t is None:
            attn_mask_t = upper if not cfg.get("causal_float") else \
                torch.zeros(Lq, Lkv).masked_fill(upper, float("-inf"))
        elif attn_mask_t.dtype == torch.bool:
            attn_mask_t = attn_mask_t | upper
        else:
            attn_mask_t = attn_mask_t.masked_fill(upper, float("-inf"))
    key_padding_t = key_padding_mask(Lkv, kv_lengths)
    assert allowed.any(axis=-1).all(), name + ": a query row sees no key"

    with torch.no_grad():
        out_t, weights_t = mha(query, key, value, key_padding_mask=key_padding_t,
                               attn_mask=attn_mask_t, need_weights=True,
                               average_attn_weights=False)
    assert out_t.shape == (B, Lq, E) and weights_t.shape == (B, H, Lq, Lkv)
    assert torch.isfinite(out_t).all() and torch.isfinite(weights_t).all(), name
    out_ref, weights_ref = reference(query, key, value, w, H, allowed, bias_add)
    err_out, err_w = rel_error(out_t.numpy(), out_ref), rel_error(weights_t.numpy(), weights_ref)
    assert err_out < 1e-5 and err_w < 1e-5, (name, err_out, err_w)
    assert np.all(weights_t.numpy()[~allowed] == 0), name

    folder = case_folder(OUT_DIR, name)
    files = {k: write_bin(folder, k, v.numpy(), np.float32) for k, v in w.items() if v is not None}
    files["query"] = write_bin(folder, "query", query.numpy(), np.float32)
    files["key"] = (files["query"] if self_attn
                    else write_bin(folder, "key", key.numpy(), np.float32))
    files["value"] = (files["query"] if self_attn
                      else write_bin(folder, "value", value.numpy(), np.float32))
    files["out"] = write_bin(folder, "out", out_t.numpy(), np.float32)
    files["weights"] = write_bin(folder, "weights", weights_t.numpy(), np.float32)
    masks = []  # kv_lengths carry per_query, the keep mask and bias do not
    if kv_lengths is not None:
        masks.append(("kv_lengths", 0, np.array(kv_lengths), np.int64))
    if libattn_mask is not None:
        mk, arr = libattn_mask
        masks.append((mk, None, arr, np.uint8 if mk == "bool" else np.float32))
    torch_desc = dict(
        key_padding_mask=None if kv_lengths is None else "bool [batch, len_kv], True = padding",
        attn_mask=None if attn_mask_t is None else "%s %s%s" % (
            "bool (True = masked out)" if attn_mask_t.dtype == torch.bool else "float (additive)",
            list(attn_mask_t.shape), ", causal upper triangle merged in" if causal else ""))
    case = dict(
        name=name, generator="tests/data/gen_torch_vectors.py", torch_version=torch.__version__,
        seed=BASE_SEED + index, embed_dim=E, num_heads=H, num_kv_heads=H, kdim=kdim, vdim=vdim,
        bias=int(bias), batch=B, len_q=Lq, len_kv=Lkv, self_attention=int(self_attn),
        causal=ATTN_CAUSAL_TOP_LEFT if causal else ATTN_CAUSAL_NONE,
        masks=write_masks(folder, masks), files=files, dtype="float32", torch_call=torch_desc,
        float64_check=dict(out_max_rel_error=err_out, weights_max_rel_error=err_w))
    write_case(folder, case)
    print("%-22s out %.2e  weights %.2e (vs float64)" % (name, err_out, err_w))


def main():
    generate(OUT_DIR, 1 << 20, (make_case, CONFIGS))


if __name__ == "__main__":
    main()
