#!/usr/bin/python3
"""Golden gradients of torch.nn.MultiheadAttention, by PyTorch autograd in
float64, for tests/test_mha_backward_torch.c (attn_mha_forward_train and
attn_mha_backward).

For each configuration in CONFIGS below this script builds

    torch.nn.MultiheadAttention(E, H, bias=..., kdim=..., vdim=...,
                                batch_first=True, dtype=torch.float64)

(dropout 0, training mode), overwrites every parameter with random values
drawn as float32 (fixed seeds: weights uniform in +-sqrt(6 / (fan_in +
fan_out)), biases uniform in +-0.5; PyTorch would initialise the biases to
zero), draws float32 query, key, value and d_out (standard normal; a
self-attention case draws one tensor x and passes it as query, key and
value), and runs, in float64,

    out = mha(query, key, value, key_padding_mask=..., attn_mask=...,
              need_weights=False)[0]
    out.backward(d_out)

which leaves the gradients in query.grad, key.grad, value.grad (x.grad, the
sum of the three, for self-attention) and in each parameter's .grad.

The layer's parameters are stored as one flat vector in libattn's order, the
layout of attn_mha_get_params (and of attn_mha_backward's d_params), which is
the order of nn.MultiheadAttention's named_parameters():

    Wq [E, E], Wk [E, kdim], Wv [E, vdim]   the three row blocks of
                                            in_proj_weight (kdim = vdim = E),
                                            else q/k/v_proj_weight
    bq [E], bk [E], bv [E]                  in_proj_bias in three (bias only)
    Wo [E, E]                               out_proj.weight
    bo [E]                                  out_proj.bias (bias only)

d_params is the parameters' .grad flattened in the same order.

PyTorch's masks are translated to libattn's terms as in gen_torch_vectors.py:
a right-padded key_padding_mask is libattn's per-batch kv lengths (int64
[batch], per_query 0); a bool attn_mask (True = masked out) is the keep mask
NOT attn_mask (uint8), shaped [1, 1, len_q, len_kv] when 2-D and
[batch, num_heads, len_q, len_kv] when 3-D ([batch * num_heads, ...] in
torch); a float attn_mask is an additive bias (float32) of the same shapes
(torch gets the same float32 values in float64; -inf masks the key); a causal
mask (the upper triangle, True, merged into torch's bool attn_mask) is
attn_mha_set_causal with ATTN_CAUSAL_TOP_LEFT (enum value 1, "causal" in
case.json). No query row ever sees no key (PyTorch gives NaN there).

Every case is written to tests/data/mha_backward/<name>/ as

  case.json   the configuration (embed_dim, num_heads, kdim, vdim, bias,
              batch, len_q, len_kv, causal, "self_attention": true/false),
              the masks, which file holds which tensor (with shape and
              dtype), the parameter blocks (name, offset into the flat
              vector, shape, and the floor of the error normalisation, see
              below), and the checks made here;
  *.bin       raw little-endian tensors:
                params [count]                        float32
                query [B, Lq, E], key [B, Lkv, kdim],
                value [B, Lkv, vdim], d_out [B, Lq, E] float32
                (self-attention: one input.bin [B, L, E] is query, key and
                value)
                kv_lengths / keep / bias              the masks (int64 /
                                                      uint8 / float32)
                out [B, Lq, E]                        float64
                d_query, d_key, d_value               float64 (self-attention:
                                                      one d_input.bin, the
                                                      sum, for all three)
                d_params [count]                      float64

The key bias gets no gradient: softmax is invariant to adding q_i . bk to
every logit of row i, so d_bk = sum_j dK_j = 0 exactly (with any mask), and
torch's golden is rounding noise (~1e-17). Normalising its error by its own
maximum would be meaningless, so every parameter block carries a "floor" in
case.json: the C test normalises a block's error by |e| + max(max|e| over
the block, floor). The floor is 0 for every block but bk, whose floor is the
largest column sum of |dK| (the gradient with respect to the projected keys,
[B * Lkv, E]) -- the magnitude of the terms that cancel in d_bk, so the
scale of its float32 rounding.

Before anything is written, for every case:
  * torch's out and gradients are checked against a plain NumPy float64
    recomputation of the analytic formula (projections, masked softmax, the
    attention backward dV = P^T dA, dP = dA V^T, dS = P (dP - rowsum(P dP)),
    dQ = s dS K, dK = s dS^T Q, and the projections' chain rule) to
    |t - r| <= 1e-10 (|r| + max|r|) per tensor and per parameter block (with
    the floor above);
  * torch's d_params, d_query, d_key, d_value are checked against central
    finite differences (L = sum(out * d_out) in float64 torch, step 1e-5) to
    |fd - g| <= 1e-7 (|g| + max|g|), max over the parameter block (with the
    floor) or the input tensor: for every parameter and input element of the
    cases "tiny" and "self_bias", and for a sample of each block and input
    (its largest element and a few random ones) in the others.
The script fails (AssertionError) otherwise.

Regenerate (Debian's python3-torch 1.13 and python3-numpy), from the source
root (the script imports golden_io.py, beside it, for the shared helpers):

    /usr/bin/python3 tests/data/gen_torch_mha_backward_vectors.py

It replaces tests/data/mha_backward/ entirely.
"""
import numpy as np
import torch

from golden_io import case_folder, check_errors, check_finite, check_restored, dot_loss, \
    error_fields, fd_sample, finite_differences, generate, make_masks, out_dir, rel_error, \
    seed_all, write_bin, write_case, write_masks

OUT_DIR = out_dir("mha_backward")
BASE_SEED = 20250402
ATTN_CAUSAL_NONE, ATTN_CAUSAL_TOP_LEFT = 0, 1
NUMPY_TOL = 1e-10  # torch vs the NumPy formula
FD_TOL = 1e-7      # torch vs central finite differences
FD_STEP = 1e-5
FD_SAMPLES = 3     # random elements per block / input, besides its largest

# name, embed_dim E, num_heads H, kdim, vdim (default E), bias, batch B, len_q Lq,
# len_kv Lkv (self-attention: Lq), self_attn, and the masks, which may combine:
# kv_lengths (one per batch row: a right-padded key_padding_mask), attn_mask
# ("bool2d", "bool3d", "float2d", "float3d") and causal (the bool upper triangle).
# fd_all: finite differences for every element, not a sample.
CONFIGS = [
    dict(name="self_bias", E=16, H=2, B=2, Lq=5, self_attn=True, bias=True, fd_all=True),
    dict(name="self_nobias", E=24, H=3, B=1, Lq=6, self_attn=True, bias=False),
    dict(name="cross_bias", E=16, H=4, B=2, Lq=4, Lkv=7, bias=True),
    dict(name="kdim_vdim_bias", E=16, H=2, kdim=12, vdim=20, B=2, Lq=5, Lkv=6, bias=True),
    dict(name="kdim_vdim_nobias", E=16, H=4, kdim=8, vdim=24, B=1, Lq=3, Lkv=9, bias=False),
    dict(name="key_padding", E=16, H=2, B=2, Lq=5, Lkv=7, bias=True, kv_lengths=[7, 3]),
    dict(name="bool_mask_2d", E=16, H=4, B=2, Lq=6, self_attn=True, bias=True,
         attn_mask="bool2d"),
    dict(name="bool_mask_3d", E=24, H=3, B=2, Lq=4, Lkv=8, bias=True, attn_mask="bool3d"),
    dict(name="float_mask_3d", E=16, H=2, B=2, Lq=5, Lkv=7, bias=True, attn_mask="float3d"),
    dict(name="causal_self", E=24, H=3, B=2, Lq=8, self_attn=True, bias=True, causal=True),
    dict(name="key_padding_causal", E=16, H=2, B=2, Lq=7, self_attn=True, bias=True,
         causal=True, kv_lengths=[7, 4]),
    dict(name="batch3", E=16, H=2, B=3, Lq=5, Lkv=6, bias=True),
    dict(name="tiny", E=4, H=2, kdim=3, vdim=5, B=2, Lq=2, Lkv=3, bias=True,
         kv_lengths=[3, 2], fd_all=True),
]


def param_layout(E, kdim, vdim, bias):
    """[(name, shape)] in attn_mha_get_params's order."""
    blocks = [("Wq", (E, E)), ("Wk", (E, kdim)), ("Wv", (E, vdim))]
    if bias:
        blocks += [("bq", (E,)), ("bk", (E,)), ("bv", (E,))]
    blocks += [("Wo", (E, E))]
    if bias:
        blocks += [("bo", (E,))]
    return blocks


def torch_blocks(mha):
    """The layer's parameter tensors (views) in attn_mha_get_params's order."""
    if mha._qkv_same_embed_dim:
        w = list(mha.in_proj_weight.chunk(3, dim=0))
    else:
        w = [mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight]
    if mha.in_proj_bias is not None:
        w += list(mha.in_proj_bias.chunk(3, dim=0))
    w.append(mha.out_proj.weight)
    if mha.out_proj.bias is not None:
        w.append(mha.out_proj.bias)
    return w


def grad_blocks(mha):
    """The parameters' .grad in the same order (in_proj_* grads split likewise)."""
    if mha._qkv_same_embed_dim:
        g = list(mha.in_proj_weight.grad.chunk(3, dim=0))
    else:
        g = [mha.q_proj_weight.grad, mha.k_proj_weight.grad, mha.v_proj_weight.grad]
    if mha.in_proj_bias is not None:
        g += list(mha.in_proj_bias.grad.chunk(3, dim=0))
    g.append(mha.out_proj.weight.grad)
    if mha.out_proj.bias is not None:
        g.append(mha.out_proj.bias.grad)
    return [t.detach().numpy().copy() for t in g]


def numpy_reference(xq, xk, xv, d_out, P, H, allowed, bias_add, self_attn):
    """The analytic float64 forward and backward; P: dict of parameter blocks."""
    B, Lq, E = xq.shape
    Lkv, hd = xk.shape[1], E // H
    s = 1.0 / np.sqrt(hd)
    lin = lambda x, w, b: x @ w.T + (b if b is not None else 0.0)
    Q, K, V = lin(xq, P["Wq"], P.get("bq")), lin(xk, P["Wk"], P.get("bk")), \
        lin(xv, P["Wv"], P.get("bv"))
    split = lambda t, L: t.reshape(B, L, H, hd).transpose(0, 2, 1, 3)
    merge = lambda t, L: t.transpose(0, 2, 1, 3).reshape(B, L, E)
    Qh, Kh, Vh = split(Q, Lq), split(K, Lkv), split(V, Lkv)
    logits = s * Qh @ Kh.transpose(0, 1, 3, 2) + bias_add
    logits = np.where(allowed, logits, -np.inf)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    Pm = e / e.sum(axis=-1, keepdims=True)
    A = merge(Pm @ Vh, Lq)
    out = lin(A, P["Wo"], P.get("bo"))
    flat = lambda t: t.reshape(-1, t.shape[-1])
    g = {"Wo": flat(d_out).T @ flat(A)}
    if "bo" in P:
        g["bo"] = flat(d_out).sum(axis=0)
    dAh = split(d_out @ P["Wo"], Lq)
    dVh = Pm.transpose(0, 1, 3, 2) @ dAh
    dP = dAh @ Vh.transpose(0, 1, 3, 2)
    dS = Pm * (dP - (Pm * dP).sum(axis=-1, keepdims=True))
    dQ, dK, dV = merge(s * dS @ Kh, Lq), merge(s * dS.transpose(0, 1, 3, 2) @ Qh, Lkv), \
        merge(dVh, Lkv)
    for name, dproj, x in (("q", dQ, xq), ("k", dK, xk), ("v", dV, xv)):
        g["W" + name] = flat(dproj).T @ flat(x)
        if "b" + name in P:
            g["b" + name] = flat(dproj).sum(axis=0)
    dxq, dxk, dxv = dQ @ P["Wq"], dK @ P["Wk"], dV @ P["Wv"]
    d_in = (dxq + dxk + dxv,) if self_attn else (dxq, dxk, dxv)
    bk_floor = float(np.max(np.abs(flat(dK)).sum(axis=0)))
    return out, d_in, g, bk_floor


def make_case(index, cfg):
    seed = BASE_SEED + index
    rng = seed_all(seed)
    name, E, H, B, Lq, bias = (cfg[x] for x in ("name", "E", "H", "B", "Lq", "bias"))
    self_attn = cfg.get("self_attn", False)
    Lkv = Lq if self_attn else cfg["Lkv"]
    kdim, vdim = cfg.get("kdim", E), cfg.get("vdim", E)
    assert not self_attn or (kdim == E and vdim == E)
    mha = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True,
                                      dtype=torch.float64)
    mha.train()  # dropout is 0; training mode keeps torch off its inference fast path
    layout = param_layout(E, kdim, vdim, bias)
    blocks = torch_blocks(mha)
    assert [tuple(b.shape) for b in blocks] == [s for _, s in layout], name
    with torch.no_grad():  # float32 values, used in float64
        for (bname, shape), b in zip(layout, blocks):
            if len(shape) == 2:
                bound = float(np.sqrt(6.0 / (shape[0] + shape[1])))
                b.copy_(torch.empty(shape).uniform_(-bound, bound).double())
            else:
                b.copy_(torch.empty(shape).uniform_(-0.5, 0.5).double())
    params32 = np.concatenate([b.detach().numpy().reshape(-1) for b in blocks]).astype(np.float32)
    assert np.array_equal(params32.astype(np.float64),
                          np.concatenate([b.detach().numpy().reshape(-1) for b in blocks]))

    x32 = torch.randn(B, Lq, E)
    k32 = x32 if self_attn else torch.randn(B, Lkv, kdim)
    v32 = x32 if self_attn else torch.randn(B, Lkv, vdim)
    do32 = torch.randn(B, Lq, E)
    mask_rng = np.random.default_rng(BASE_SEED + index)
    allowed, bias_add, attn_mask_t, key_padding_t, masks = make_masks(cfg, B, H, Lq, Lkv,
                                                                      mask_rng)

    # float64 torch autograd.
    if self_attn:
        inputs = [x32.double().requires_grad_()]
        query = key = value = inputs[0]
    else:
        inputs = [t.double().requires_grad_() for t in (x32, k32, v32)]
        query, key, value = inputs
    d_out = do32.double()
    forward = lambda: mha(query, key, value, key_padding_mask=key_padding_t,
                          attn_mask=attn_mask_t, need_weights=False)[0]
    out = forward()
    assert out.dtype == torch.float64 and out.shape == (B, Lq, E), name
    out.backward(d_out)
    out_t = out.detach().numpy().copy()
    d_in_t = [t.grad.numpy().copy() for t in inputs]
    d_par_t = grad_blocks(mha)
    check_finite(name, [out_t] + d_in_t + d_par_t)

    # The NumPy float64 formula.
    P = {bname: b.detach().numpy() for (bname, _), b in zip(layout, blocks)}
    ref_out, ref_in, ref_g, bk_floor = numpy_reference(
        x32.double().numpy(), k32.double().numpy(), v32.double().numpy(),
        d_out.numpy(), P, H, allowed, bias_add, self_attn)
    floors = [bk_floor if bname == "bk" else 0.0 for bname, _ in layout]
    in_names = ["d_input"] if self_attn else ["d_query", "d_key", "d_value"]
    np_err = {"out": rel_error(out_t, ref_out)}
    np_err.update((n, rel_error(t, r)) for n, t, r in zip(in_names, d_in_t, ref_in))
    np_err.update(("d_" + bname, rel_error(t, ref_g[bname], f))
                  for (bname, _), t, f in zip(layout, d_par_t, floors))
    check_errors(name, "the NumPy formula", np_err, NUMPY_TOL)
    if bias:
        assert np.max(np.abs(d_par_t[layout.index(("bk", (E,)))])) <= 1e-12 * bk_floor, name

    # Central finite differences of L = sum(out * d_out) in float64 torch.
    loss = dot_loss(forward, d_out)
    indices = None if cfg.get("fd_all", False) else fd_sample(rng, FD_SAMPLES)
    with torch.no_grad():
        fd_par, n_par = finite_differences(loss, [b.data for b in blocks], d_par_t, floors,
                                           FD_STEP, indices)
        fd_in, n_in = finite_differences(loss, [t.data for t in inputs], d_in_t,
                                         [0.0] * len(inputs), FD_STEP, indices)
    fd_err = dict(("d_" + bname, e) for (bname, _), e in zip(layout, fd_par))
    fd_err.update(zip(in_names, fd_in))
    check_errors(name, "finite differences", fd_err, FD_TOL)
    check_restored(name, loss, out, d_out)

    folder = case_folder(OUT_DIR, name)
    files = {"params": write_bin(folder, "params", params32, np.float32)}
    if self_attn:
        files["query"] = files["key"] = files["value"] = \
            write_bin(folder, "input", x32.numpy(), np.float32)
    else:
        for key_, t in (("query", x32), ("key", k32), ("value", v32)):
            files[key_] = write_bin(folder, key_, t.numpy(), np.float32)
    files["d_out"] = write_bin(folder, "d_out", do32.numpy(), np.float32)
    files["out"] = write_bin(folder, "out", out_t, np.float64)
    if self_attn:
        files["d_query"] = files["d_key"] = files["d_value"] = \
            write_bin(folder, "d_input", d_in_t[0], np.float64)
    else:
        for key_, t in zip(("d_query", "d_key", "d_value"), d_in_t):
            files[key_] = write_bin(folder, key_, t, np.float64)
    d_params = np.concatenate([g.reshape(-1) for g in d_par_t])
    files["d_params"] = write_bin(folder, "d_params", d_params, np.float64)
    param_blocks, offset = [], 0
    for (bname, shape), floor in zip(layout, floors):
        param_blocks.append(dict(name=bname, offset=offset, shape=list(shape), floor=floor))
        offset += int(np.prod(shape))
    assert offset == params32.size == d_params.size
    torch_desc = dict(
        key_padding_mask=None if key_padding_t is None else "bool [batch, len_kv], True = padding",
        attn_mask=None if attn_mask_t is None else "%s %s%s" % (
            "bool (True = masked out)" if attn_mask_t.dtype == torch.bool
            else "float64 (additive)", list(attn_mask_t.shape),
            ", causal upper triangle merged in" if cfg.get("causal") else ""))
    case = dict(
        name=name, generator="tests/data/gen_torch_mha_backward_vectors.py",
        torch_version=torch.__version__, seed=seed, embed_dim=E, num_heads=H, num_kv_heads=H,
        kdim=kdim, vdim=vdim, bias=int(bias), batch=B, len_q=Lq, len_kv=Lkv,
        self_attention=bool(self_attn),
        causal=ATTN_CAUSAL_TOP_LEFT if cfg.get("causal") else ATTN_CAUSAL_NONE,
        param_count=int(params32.size), param_blocks=param_blocks,
        masks=write_masks(folder, masks),
        files=files, torch_call=torch_desc,
        numpy_check=error_fields(np_err),
        finite_difference_check=dict(step=FD_STEP, params_checked=n_par, inputs_checked=n_in,
                                     **error_fields(fd_err)))
    write_case(folder, case)
    print("%-20s %5d params; torch vs NumPy worst %.1e; finite differences: %5d params, "
          "%4d inputs, worst %.1e" % (name, params32.size, max(np_err.values()), n_par, n_in,
                                      max(fd_err.values())))


def main():
    generate(OUT_DIR, 400 * 1024, (make_case, CONFIGS))


if __name__ == "__main__":
    main()
