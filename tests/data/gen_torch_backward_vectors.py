#!/usr/bin/python3
"""Golden gradients of scaled dot-product attention, by PyTorch autograd in
float64, for tests/test_sdpa_backward_torch.c (attn_sdpa_backward).

For each configuration in CONFIGS below this script draws random q, k, v and
d_out (float32 values, fixed seeds) and masks, then computes in float64 torch,
with q, k, v as leaves that require gradients:

    logits = scale * q @ k^T (+ bias)       k, v: kv head h // (Hq / Hkv) for
    masked logits = -inf                    query head h (repeat_interleave
    P = softmax over the keys               over the head dim, so autograd sums
    out = P @ v                             d_k and d_v over each group)
    (out * d_out).sum().backward()  ->  d_q, d_k, d_v

torch 1.13 has no F.scaled_dot_product_attention, so this is composed from
torch ops. A query row with no visible key (all its keys masked) gives
out = 0 and zero gradients, as libattn does (torch's softmax would give NaN):
its logits are replaced by zeros before the softmax and its weights by zeros
after it, both with torch.where, so the autograd graph gives zeros there too.

Masks are drawn directly in libattn's terms (all kinds combine: a key is
attended only if every kind allows it):

  kv_lengths  int64 [batch] (per_query 0) or [batch, len_q] (per_query 1):
              keys at positions >= length are masked; 0 masks the whole row;
  bool        uint8 keep mask, 1 = attend, [mb, mh, mq, len_kv] with
              mb in {1, batch}, mh in {1, heads_q}, mq in {1, len_q}
              (broadcast as in NumPy);
  bias        float32 additive bias, same shapes; -inf masks the key (torch
              gets the key masked and a bias of 0 there, never -inf + x);
  causal      the op's setting: ATTN_CAUSAL_TOP_LEFT (1) query i sees keys
              j <= i; ATTN_CAUSAL_BOTTOM_RIGHT (2) j <= i + len_kv - len_q.

The scale is libattn's default (float)(1.0 / sqrt(dim_qk)), computed in
float32 as libattn does, unless the case sets custom_scale = 1 (the C test
then calls attn_sdpa_set_scale); either way case.json holds the float32 scale
used, and torch multiplies by that float32 value in float64.

Every case is written to tests/data/sdpa_backward/<name>/ as

  case.json   the configuration (shapes, layout ATTN_LAYOUT_BHSD = 0 or
              ATTN_LAYOUT_BSHD = 1, causal, scale, custom_scale), the masks
              and which file holds which tensor (with shape and dtype);
  *.bin       raw little-endian tensors, q k v in the case's layout
              (BHSD [B, H, L, D] or BSHD [B, L, H, D]):
                q, k, v, d_out            float32 (the inputs)
                kv_lengths / keep / bias  the masks (int64 / uint8 / float32)
                out, d_q, d_k, d_v        float64 (expected; d_* in the layout
                                          of q, k, v respectively, out and
                                          d_out in the layout of q)

Only inputs and expected results are stored: the C test runs libattn's own
forward (out and lse), as a user does, before the backward.

Before anything is written, torch's out and gradients are checked against a
plain NumPy float64 recomputation of the analytic formula (P from the masked
softmax; dV = P^T dO, dP = dO V^T, D = rowsum(P * dP), dS = P * (dP - D),
dQ = scale dS K, dK = scale dS^T Q, dK and dV summed over each GQA group) to
max |t - r| / (|r| + max|r| over the tensor) <= 1e-10; the script fails
(AssertionError) otherwise.

Regenerate (Debian's python3-torch 1.13 and python3-numpy), from the source
root (the script imports golden_io.py, beside it, for the shared helpers):

    /usr/bin/python3 tests/data/gen_torch_backward_vectors.py

It replaces tests/data/sdpa_backward/ entirely.
"""
import numpy as np
import torch

from golden_io import case_folder, check_errors, check_finite, error_fields, \
    float32_normal, generate, out_dir, rel_error, seed_all, write_bin, write_case, write_masks

OUT_DIR = out_dir("sdpa_backward")
BASE_SEED = 20250311
ATTN_LAYOUT_BHSD, ATTN_LAYOUT_BSHD = 0, 1
ATTN_CAUSAL_NONE, ATTN_CAUSAL_TOP_LEFT, ATTN_CAUSAL_BOTTOM_RIGHT = 0, 1, 2
LAYOUTS = dict(bhsd=ATTN_LAYOUT_BHSD, bshd=ATTN_LAYOUT_BSHD)
CAUSAL = dict(none=ATTN_CAUSAL_NONE, top_left=ATTN_CAUSAL_TOP_LEFT,
              bottom_right=ATTN_CAUSAL_BOTTOM_RIGHT)
CHECK_TOL = 1e-10

# name, shapes (B, Hq, Hkv, Lq, Lkv, D = dim_qk, Dv = dim_v; Hkv defaults to Hq,
# Dv to D), layout, causal, scale (None: libattn's default), and the masks:
#   lengths: a list [B] (per batch row) or "per_query" (random [B, Lq], some 0);
#   keep:    the keep mask's shape as "full" [B, Hq, Lq, Lkv] or a tuple
#            (mb, mh, mq); empty_row=True also clears one whole row;
#   bias:    the bias's shape likewise; ninf = fraction of -inf entries,
#            ninf_row=True sets one whole row to -inf.
CONFIGS = [
    dict(name="plain", B=2, Hq=2, Lq=5, Lkv=5, D=8),
    dict(name="bshd", B=2, Hq=3, Lq=6, Lkv=7, D=8, layout="bshd"),
    dict(name="gqa", B=2, Hq=6, Hkv=2, Lq=5, Lkv=6, D=8),
    dict(name="mqa_bshd", B=2, Hq=4, Hkv=1, Lq=6, Lkv=5, D=16, layout="bshd"),
    dict(name="dim_v_differs", B=2, Hq=2, Lq=5, Lkv=7, D=6, Dv=12),
    dict(name="lq_lt_lkv", B=1, Hq=3, Lq=3, Lkv=12, D=8),
    dict(name="lq_gt_lkv", B=2, Hq=2, Lq=11, Lkv=4, D=8, layout="bshd"),
    dict(name="custom_scale", B=2, Hq=2, Lq=5, Lkv=6, D=8, scale=0.37),
    dict(name="causal_top_left", B=2, Hq=2, Lq=6, Lkv=9, D=8, causal="top_left"),
    dict(name="causal_br_lq_lt_lkv", B=2, Hq=2, Hkv=1, Lq=4, Lkv=10, D=8,
         causal="bottom_right"),
    dict(name="causal_br_lq_gt_lkv", B=1, Hq=2, Lq=10, Lkv=4, D=8, Dv=6,
         causal="bottom_right", layout="bshd"),
    dict(name="kv_lengths", B=3, Hq=2, Lq=5, Lkv=8, D=8, lengths=[6, 0, 3]),
    dict(name="kv_lengths_per_query", B=2, Hq=2, Hkv=1, Lq=6, Lkv=8, D=8,
         lengths="per_query", layout="bshd"),
    dict(name="bool_full", B=2, Hq=2, Lq=5, Lkv=7, D=8, keep="full", empty_row=True),
    dict(name="bool_broadcast", B=2, Hq=3, Lq=5, Lkv=7, D=8, keep=(1, 1, 5)),
    dict(name="bias_ninf", B=2, Hq=2, Lq=5, Lkv=7, D=8, bias=(2, 1, 5), ninf=0.25,
         ninf_row=True),
    dict(name="all_masks_causal", B=2, Hq=4, Hkv=2, Lq=7, Lkv=9, D=8, Dv=5,
         layout="bshd", causal="bottom_right", lengths=[9, 5], keep=(2, 1, 7),
         bias=(1, 4, 1), ninf=0.15, scale=0.3),
]


def mask_shape(spec, B, Hq, Lq, Lkv):
    return (B, Hq, Lq, Lkv) if spec == "full" else tuple(spec) + (Lkv,)


def numpy_reference(q, k, v, d_out, allowed, bias_add, scale, G):
    """The analytic float64 formula; q [B,Hq,Lq,D], k [B,Hkv,Lkv,D] (BHSD)."""
    kr, vr = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)
    logits = scale * q @ kr.transpose(0, 1, 3, 2) + bias_add
    logits = np.where(allowed, logits, -np.inf)
    row_any = allowed.any(axis=-1, keepdims=True)
    m = np.where(row_any, logits.max(axis=-1, keepdims=True), 0.0)
    e = np.where(allowed, np.exp(np.where(allowed, logits - m, 0.0)), 0.0)
    s = e.sum(axis=-1, keepdims=True)
    P = np.where(row_any, e / np.where(row_any, s, 1.0), 0.0)
    out = P @ vr
    dV = P.transpose(0, 1, 3, 2) @ d_out
    dP = d_out @ vr.transpose(0, 1, 3, 2)
    Drow = (P * dP).sum(axis=-1, keepdims=True)
    dS = P * (dP - Drow)
    dQ = scale * dS @ kr
    dK = scale * dS.transpose(0, 1, 3, 2) @ q
    B, Hq = q.shape[:2]
    group_sum = lambda t: t.reshape(B, Hq // G, G, *t.shape[2:]).sum(axis=2)
    return out, dQ, group_sum(dK), group_sum(dV)


def make_case(index, cfg):
    seed = BASE_SEED + index
    rng = seed_all(seed)
    name, B, Hq, Lq, Lkv, D = (cfg[x] for x in ("name", "B", "Hq", "Lq", "Lkv", "D"))
    Hkv, Dv = cfg.get("Hkv", Hq), cfg.get("Dv", D)
    assert Hq % Hkv == 0 and B <= 3 and Hq <= 6 and max(Lq, Lkv) <= 12 and max(D, Dv) <= 16
    G = Hq // Hkv
    layout = LAYOUTS[cfg.get("layout", "bhsd")]
    causal = CAUSAL[cfg.get("causal", "none")]
    custom_scale = cfg.get("scale") is not None
    scale = np.float32(cfg["scale"]) if custom_scale else np.float32(1.0 / np.sqrt(D))

    # float32 values, BHSD order here; stored in the case's layout.
    q32 = torch.randn(B, Hq, Lq, D)
    k32 = torch.randn(B, Hkv, Lkv, D)
    v32 = torch.randn(B, Hkv, Lkv, Dv)
    do32 = torch.randn(B, Hq, Lq, Dv)

    # What each (b, h, i, j) may see, and the additive bias, as libattn combines them.
    allowed = np.ones((B, Hq, Lq, Lkv), dtype=bool)
    bias_add = np.zeros((B, Hq, Lq, Lkv))
    i_idx, j_idx = np.arange(Lq)[:, None], np.arange(Lkv)[None, :]
    if causal == ATTN_CAUSAL_TOP_LEFT:
        allowed &= (j_idx <= i_idx)
    elif causal == ATTN_CAUSAL_BOTTOM_RIGHT:
        allowed &= (j_idx <= i_idx + Lkv - Lq)
    masks = []  # (kind, per_query, array, dtype)
    lengths = cfg.get("lengths")
    if lengths is not None:
        if lengths == "per_query":
            lens = rng.integers(0, Lkv + 1, size=(B, Lq))
            lens[0, 1] = 0  # at least one empty row, and one full one
            lens[-1, -1] = Lkv
            allowed &= (j_idx[None, None] < lens[:, None, :, None])
            masks.append(("kv_lengths", 1, lens.astype(np.int64), np.int64))
        else:
            lens = np.array(lengths, dtype=np.int64)
            assert lens.shape == (B,) and lens.min() >= 0 and lens.max() <= Lkv
            allowed &= (np.arange(Lkv)[None, :] < lens[:, None])[:, None, None, :]
            masks.append(("kv_lengths", 0, lens, np.int64))
    if cfg.get("keep") is not None:
        shape = mask_shape(cfg["keep"], B, Hq, Lq, Lkv)
        keep = (rng.random(shape) < 0.65).astype(np.uint8)
        if cfg.get("empty_row"):
            keep[0, -1, 2, :] = 0
        allowed &= np.broadcast_to(keep != 0, allowed.shape)
        masks.append(("bool", 0, keep, np.uint8))
    if cfg.get("bias") is not None:
        shape = mask_shape(cfg["bias"], B, Hq, Lq, Lkv)
        bias = float32_normal(rng, shape, 1.5)
        bias[rng.random(shape) < cfg.get("ninf", 0.0)] = -np.inf
        if cfg.get("ninf_row"):
            bias[-1, 0, 1, :] = -np.inf
        finite = np.isfinite(bias)
        assert np.all(finite | (bias == -np.inf))
        allowed &= np.broadcast_to(finite, allowed.shape)
        bias_add = bias_add + np.broadcast_to(np.where(finite, bias, 0.0).astype(np.float64),
                                              allowed.shape)
        masks.append(("bias", 0, bias, np.float32))
    row_any = allowed.any(axis=-1, keepdims=True)
    empty_rows = int((~row_any).sum())

    # float64 torch autograd.
    q = q32.double().requires_grad_()
    k = k32.double().requires_grad_()
    v = v32.double().requires_grad_()
    d_out = do32.double()
    allowed_t, row_any_t = torch.from_numpy(allowed), torch.from_numpy(row_any)
    kr, vr = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
    logits = float(scale) * (q @ kr.transpose(-1, -2)) + torch.from_numpy(bias_add)
    logits = logits.masked_fill(~allowed_t, float("-inf"))
    logits = torch.where(row_any_t, logits, torch.zeros_like(logits))  # no all -inf row
    P = torch.softmax(logits, dim=-1)
    P = torch.where(row_any_t, P, torch.zeros_like(P))
    out = P @ vr
    (out * d_out).sum().backward()
    out_t = out.detach().numpy()
    dq_t, dk_t, dv_t = q.grad.numpy(), k.grad.numpy(), v.grad.numpy()
    check_finite(name, (out_t, dq_t, dk_t, dv_t))

    # The same in plain NumPy float64 from the analytic formula.
    ref = numpy_reference(q32.double().numpy(), k32.double().numpy(), v32.double().numpy(),
                          do32.double().numpy(), allowed, bias_add, float(scale), G)
    errs = dict(zip(("out", "d_q", "d_k", "d_v"),
                    (rel_error(t, r) for t, r in zip((out_t, dq_t, dk_t, dv_t), ref))))
    check_errors(name, "the NumPy formula", errs, CHECK_TOL)
    empty = ~row_any[..., 0]
    assert np.all(out_t[empty] == 0) and np.all(dq_t[empty] == 0), name
    # keys nobody sees get zero d_k and d_v
    unseen = ~allowed.reshape(B, Hkv, G, Lq, Lkv).any(axis=(2, 3))
    assert np.all(dk_t[unseen] == 0) and np.all(dv_t[unseen] == 0), name

    to_layout = (lambda t: t) if layout == ATTN_LAYOUT_BHSD else \
        (lambda t: np.ascontiguousarray(np.swapaxes(t, 1, 2)))
    folder = case_folder(OUT_DIR, name)
    files = {}
    for key, arr, dt in (("q", q32.numpy(), np.float32), ("k", k32.numpy(), np.float32),
                         ("v", v32.numpy(), np.float32), ("d_out", do32.numpy(), np.float32),
                         ("out", out_t, np.float64), ("d_q", dq_t, np.float64),
                         ("d_k", dk_t, np.float64), ("d_v", dv_t, np.float64)):
        files[key] = write_bin(folder, key, to_layout(arr), dt)
    case = dict(
        name=name, generator="tests/data/gen_torch_backward_vectors.py",
        torch_version=torch.__version__, seed=seed, batch=B, heads_q=Hq, heads_kv=Hkv,
        len_q=Lq, len_kv=Lkv, dim_qk=D, dim_v=Dv, layout=layout, causal=causal,
        scale=float(scale), custom_scale=int(custom_scale), empty_rows=empty_rows,
        masks=write_masks(folder, masks), files=files, float64_check=error_fields(errs))
    write_case(folder, case)
    print("%-22s empty rows %3d; torch vs NumPy: out %.1e d_q %.1e d_k %.1e d_v %.1e"
          % (name, empty_rows, errs["out"], errs["d_q"], errs["d_k"], errs["d_v"]))


def main():
    generate(OUT_DIR, 300 * 1024, (make_case, CONFIGS))


if __name__ == "__main__":
    main()
