#!/usr/bin/python3
"""Golden outputs and gradients of torch.nn.TransformerEncoderLayer, by
PyTorch autograd in float64, for tests/test_encoder_torch.c
(attn_encoder_layer_forward and attn_encoder_layer_backward).

For each configuration in CONFIGS below this script builds

    torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward,
                                     dropout=0.0, activation="relu" | "gelu",
                                     layer_norm_eps=eps, batch_first=True,
                                     norm_first=..., dtype=torch.float64)

in training mode (dropout is 0; training mode keeps torch on its autograd
path, off the inference fast path torch._transformer_encoder_layer_fwd),
overwrites every parameter with random values drawn as float32 (fixed
seeds: weights uniform in +-sqrt(6 / (fan_in + fan_out)), biases uniform in
+-0.5, the layer norms' weights uniform in [0.5, 1.5] and their biases in
+-0.5; PyTorch would initialise the biases to zero and the norms to 1 and
0, which would hide a swapped or ignored block), draws float32 src and d_out
(standard normal; src times "src_scale" in the case eps_1e-6, whose layer
norm variances must be near its eps for the eps to matter, see CONFIGS) and
runs, in float64,

    out = layer(src, src_mask=..., src_key_padding_mask=...)
    out.backward(d_out)

which leaves the gradients in src.grad and in each parameter's .grad.
layer_norm_eps is given to torch as written in CONFIGS (1e-5, 1e-6); the C
test passes it as a float, which moves the normalisation by less than 1e-9
relative (1e-6's rounding against eps_1e-6's variances of ~4e-6), far below
the test's tolerance.

The layer's parameters are stored as one flat vector, the layout of
attn_encoder_layer_get_params (and of attn_encoder_layer_backward's
d_params), which is the order of nn.TransformerEncoderLayer's
named_parameters() (d = d_model, ff = dim_feedforward):

    Wq, Wk, Wv [d, d]          the three row blocks of self_attn.in_proj_weight
    bq, bk, bv [d]             self_attn.in_proj_bias in three
    Wo [d, d], bo [d]          self_attn.out_proj.weight, .bias
    W1 [ff, d], b1 [ff]        linear1.weight, .bias
    W2 [d, ff], b2 [d]         linear2.weight, .bias
    norm1.weight, norm1.bias,
    norm2.weight, norm2.bias [d]

d_params is the parameters' .grad flattened in the same order.

PyTorch's masks are translated to libattn's terms as in
gen_torch_mha_backward_vectors.py: a right-padded src_key_padding_mask is
libattn's per-batch kv lengths (int64 [batch], per_query 0); a bool src_mask
(True = masked out) is the keep mask NOT src_mask (uint8), shaped
[1, 1, len, len] when 2-D and [batch, nhead, len, len] when 3-D
([batch * nhead, ...] in torch); a float src_mask is an additive bias
(float32) of the same shapes (torch gets the same float32 values in float64;
-inf masks the key); a causal mask (the upper triangle, True, merged into
torch's bool src_mask) is attn_encoder_layer_set_causal with
ATTN_CAUSAL_TOP_LEFT (enum value 1, "causal" in case.json). No query row
ever sees no key (PyTorch gives NaN there).

Every case is written to tests/data/encoder/<name>/ as

  case.json   the configuration (d_model, nhead, dim_feedforward,
              activation: 0 = relu, 1 = gelu as attn_activation, norm_first
              0 / 1, layer_norm_eps, batch, len, causal), the masks, which
              file holds which tensor (with shape and dtype), the parameter
              blocks (name, offset into the flat vector, shape, and the
              floor of the error normalisation, see below), and the checks
              made here;
  *.bin       raw little-endian tensors:
                params [count]                   float32
                src [B, L, d], d_out [B, L, d]   float32
                kv_lengths / keep / bias         the masks (int64 / uint8 /
                                                 float32)
                out [B, L, d], d_src [B, L, d]   float64
                d_params [count]                 float64

The key bias gets no gradient: softmax is invariant to adding q_i . bk to
every logit of row i, so d_bk = sum_j dK_j = 0 exactly (with any mask), and
torch's golden is rounding noise. As in the MHA set, every parameter block
carries a "floor" in case.json: the C test normalises a block's error by
|e| + max(max|e| over the block, floor). The floor is 0 for every block but
bk, whose floor is the largest column sum of |dK| (the gradient with respect
to the projected keys, [B * L, d], from the NumPy recomputation below) --
the magnitude of the terms that cancel in d_bk, so the scale of its float32
rounding.

Before anything is written, for every case:
  * torch's out, d_src and d_params are checked against a plain NumPy
    float64 recomputation of the layer written from the formulas (layer
    norm with biased variance and its backward dx = rstd (g - mean(g) -
    x_hat mean(g x_hat)), g = dy weight; ReLU, or the exact GELU
    x Phi(x) with math.erf and its derivative Phi(x) + x phi(x); the
    residuals in post- or pre-norm order; the self-attention's projections,
    masked softmax and its backward as in the MHA generator) to
    |t - r| <= 1e-10 (|r| + max|r|) per tensor and per parameter block
    (with the floor above);
  * torch's d_params and d_src are checked against central finite
    differences (L = sum(out * d_out) in float64 torch, step 1e-5; for src
    1e-5 times src_scale, as the layer norm's curvature grows with 1 /
    src_scale) to
    |fd - g| <= 1e-7 (|g| + max|g|), max over the parameter block (with the
    floor) or d_src: for every parameter and src element of the cases
    "tiny" and "post_relu", and for a sample of each block and of src (its
    largest element and a few random ones) in the others. (A ReLU input
    within a step of 0 would make a difference cross the kink; this check
    would then fail, and none does.)
The script fails (AssertionError) otherwise.

Regenerate (Debian's python3-torch 1.13 and python3-numpy), from the source
root (the script imports golden_io.py, beside it, for the shared helpers):

    /usr/bin/python3 tests/data/gen_torch_encoder_vectors.py

It replaces tests/data/encoder/ entirely.
"""
import math

import numpy as np
import torch

from golden_io import case_folder, check_errors, check_finite, check_restored, dot_loss, \
    error_fields, fd_sample, finite_differences, generate, make_masks, out_dir, rel_error, \
    seed_all, write_bin, write_case, write_masks

OUT_DIR = out_dir("encoder")
BASE_SEED = 20250520
ATTN_CAUSAL_NONE, ATTN_CAUSAL_TOP_LEFT = 0, 1
ACTIVATIONS = {"relu": 0, "gelu": 1}  # attn_activation's values
NUMPY_TOL = 1e-10  # torch vs the NumPy formula
FD_TOL = 1e-7      # torch vs central finite differences
FD_STEP = 1e-5
FD_SAMPLES = 3     # random elements per block / src, besides its largest

# name, d_model d, nhead H, dim_feedforward ff, activation, norm_first, layer_norm_eps
# (default 1e-5, torch's), batch B, len L, and the masks, which may combine: kv_lengths
# (one per batch row: a right-padded src_key_padding_mask), attn_mask ("bool2d",
# "bool3d", "float2d", "float3d") and causal (the bool upper triangle).
# src_scale (default 1) scales src's draws. fd_all: finite differences for every element,
# not a sample.
CONFIGS = [
    dict(name="post_relu", d=8, H=2, ff=24, act="relu", norm_first=False, B=2, L=5,
         fd_all=True),
    dict(name="post_gelu", d=8, H=4, ff=16, act="gelu", norm_first=False, B=2, L=6),
    dict(name="pre_relu", d=8, H=1, ff=16, act="relu", norm_first=True, B=1, L=7),
    dict(name="pre_gelu", d=12, H=3, ff=16, act="gelu", norm_first=True, B=2, L=4),
    dict(name="key_padding", d=8, H=2, ff=16, act="gelu", norm_first=True, B=2, L=7,
         kv_lengths=[7, 4]),
    dict(name="causal", d=8, H=2, ff=16, act="gelu", norm_first=False, B=2, L=6, causal=True),
    dict(name="key_padding_causal", d=8, H=2, ff=16, act="relu", norm_first=True, B=2, L=6,
         causal=True, kv_lengths=[6, 3]),
    dict(name="bool_mask_2d", d=8, H=2, ff=16, act="relu", norm_first=False, B=2, L=5,
         attn_mask="bool2d"),
    dict(name="float_mask_3d", d=8, H=2, ff=16, act="gelu", norm_first=True, B=2, L=5,
         attn_mask="float3d"),
    dict(name="batch3", d=8, H=2, ff=16, act="gelu", norm_first=False, B=3, L=4),
    # src's variance (~4e-6) near eps, so that a layer using another eps (torch's default
    # 1e-5, or none) fails: with variances of ~1 an eps moves the output by ~1e-6 relative,
    # below the C test's tolerance. Pre-norm, so that src is LN1's input as it is.
    dict(name="eps_1e-6", d=8, H=4, ff=16, act="relu", norm_first=True, B=2, L=4, eps=1e-6,
         src_scale=0.002),
    # UvA DL tutorial 6's model size (its reverse task: 32 features, one head, 64 hidden)
    dict(name="uva", d=32, H=1, ff=64, act="relu", norm_first=False, B=2, L=16),
    # below the others' sizes (as the MHA set's "tiny"), so that every element is differenced
    dict(name="tiny", d=4, H=2, ff=8, act="gelu", norm_first=False, B=2, L=3,
         kv_lengths=[3, 2], fd_all=True),
]


def param_layout(d, ff):
    """[(name, shape)] in attn_encoder_layer_get_params's order."""
    return [("Wq", (d, d)), ("Wk", (d, d)), ("Wv", (d, d)), ("bq", (d,)), ("bk", (d,)),
            ("bv", (d,)), ("Wo", (d, d)), ("bo", (d,)), ("W1", (ff, d)), ("b1", (ff,)),
            ("W2", (d, ff)), ("b2", (d,)), ("norm1.weight", (d,)), ("norm1.bias", (d,)),
            ("norm2.weight", (d,)), ("norm2.bias", (d,))]


def split_qkv(t):
    """in_proj_weight / in_proj_bias (or their .grad) in its three row blocks."""
    return list(t.chunk(3, dim=0))


def torch_blocks(layer):
    """The layer's parameter tensors (views) in param_layout's order; checks
    that they tile named_parameters() in its order."""
    sa = layer.self_attn
    w = split_qkv(sa.in_proj_weight) + split_qkv(sa.in_proj_bias) + [
        sa.out_proj.weight, sa.out_proj.bias, layer.linear1.weight, layer.linear1.bias,
        layer.linear2.weight, layer.linear2.bias, layer.norm1.weight, layer.norm1.bias,
        layer.norm2.weight, layer.norm2.bias]
    named = [p for _, p in layer.named_parameters()]
    assert [n for n, _ in layer.named_parameters()] == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
        "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    # the views must be the named parameters' storage, in order and without gaps
    assert sum(t.numel() for t in w) == sum(p.numel() for p in named)
    assert w[0].data_ptr() == named[0].data_ptr() and w[3].data_ptr() == named[1].data_ptr()
    return w


def grad_blocks(layer):
    """The parameters' .grad in the same order (in_proj_* grads split likewise)."""
    sa = layer.self_attn
    g = split_qkv(sa.in_proj_weight.grad) + split_qkv(sa.in_proj_bias.grad) + [
        p.grad for p in (sa.out_proj.weight, sa.out_proj.bias, layer.linear1.weight,
                         layer.linear1.bias, layer.linear2.weight, layer.linear2.bias,
                         layer.norm1.weight, layer.norm1.bias, layer.norm2.weight,
                         layer.norm2.bias)]
    return [t.detach().numpy().copy() for t in g]


# ---------------------------------------------------------------- the NumPy formula
# Every piece is a forward returning (value, cache) and a backward taking the
# cache and the output's gradient, returning the input's gradient and filling
# the parameter gradients into the dict g. Rows are the last axis's vectors.

def ln_forward(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased, as torch's layer norm
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    return xhat * w + b, (xhat, rstd, w)


def ln_backward(dy, cache, g, prefix):
    xhat, rstd, w = cache
    rows = lambda t: t.reshape(-1, t.shape[-1])
    g[prefix + ".weight"] = (rows(dy) * rows(xhat)).sum(axis=0)
    g[prefix + ".bias"] = rows(dy).sum(axis=0)
    gy = dy * w
    return rstd * (gy - gy.mean(axis=-1, keepdims=True)
                   - xhat * (gy * xhat).mean(axis=-1, keepdims=True))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def act_forward(x, kind):
    if kind == "relu":
        return np.maximum(x, 0.0)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))  # exact GELU, x Phi(x)


def act_derivative(x, kind):
    if kind == "relu":
        return (x > 0).astype(np.float64)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * phi


def ff_forward(y, P, kind):
    pre = y @ P["W1"].T + P["b1"]
    hidden = act_forward(pre, kind)
    return hidden @ P["W2"].T + P["b2"], (y, pre, hidden)


def ff_backward(df, cache, P, kind, g):
    y, pre, hidden = cache
    rows = lambda t: t.reshape(-1, t.shape[-1])
    g["W2"], g["b2"] = rows(df).T @ rows(hidden), rows(df).sum(axis=0)
    dpre = (df @ P["W2"]) * act_derivative(pre, kind)
    g["W1"], g["b1"] = rows(dpre).T @ rows(y), rows(dpre).sum(axis=0)
    return dpre @ P["W1"]


def sa_forward(x, P, H, allowed, bias_add):
    """Self-attention of x [B, L, d] (query = key = value = x)."""
    B, L, d = x.shape
    hd = d // H
    s = 1.0 / np.sqrt(hd)
    Q, K, V = (x @ P["W" + n].T + P["b" + n] for n in "qkv")
    split = lambda t: t.reshape(B, L, H, hd).transpose(0, 2, 1, 3)
    Qh, Kh, Vh = split(Q), split(K), split(V)
    logits = s * Qh @ Kh.transpose(0, 1, 3, 2) + bias_add
    logits = np.where(allowed, logits, -np.inf)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    Pm = e / e.sum(axis=-1, keepdims=True)
    A = (Pm @ Vh).transpose(0, 2, 1, 3).reshape(B, L, d)
    return A @ P["Wo"].T + P["bo"], (x, Qh, Kh, Vh, Pm, A, s, H)


def sa_backward(da, cache, P, g):
    """Returns d_x and the largest column sum of |dK| (bk's floor)."""
    x, Qh, Kh, Vh, Pm, A, s, H = cache
    B, L, d = x.shape
    hd = d // H
    rows = lambda t: t.reshape(-1, t.shape[-1])
    split = lambda t: t.reshape(B, L, H, hd).transpose(0, 2, 1, 3)
    merge = lambda t: t.transpose(0, 2, 1, 3).reshape(B, L, d)
    g["Wo"], g["bo"] = rows(da).T @ rows(A), rows(da).sum(axis=0)
    dAh = split(da @ P["Wo"])
    dVh = Pm.transpose(0, 1, 3, 2) @ dAh
    dP = dAh @ Vh.transpose(0, 1, 3, 2)
    dS = Pm * (dP - (Pm * dP).sum(axis=-1, keepdims=True))
    dQ, dK, dV = merge(s * dS @ Kh), merge(s * dS.transpose(0, 1, 3, 2) @ Qh), merge(dVh)
    dx = 0.0
    for n, dproj in (("q", dQ), ("k", dK), ("v", dV)):
        g["W" + n], g["b" + n] = rows(dproj).T @ rows(x), rows(dproj).sum(axis=0)
        dx = dx + dproj @ P["W" + n]
    return dx, float(np.max(np.abs(rows(dK)).sum(axis=0)))


def numpy_reference(x, d_out, P, H, kind, norm_first, eps, allowed, bias_add):
    """The layer's float64 forward and backward: out, d_src, {block: grad}, bk's floor,
    and the feed-forward's pre-activations (for the report on ReLU's kink)."""
    g = {}
    ln = lambda t, k: ln_forward(t, P[k + ".weight"], P[k + ".bias"], eps)
    if norm_first:  # h = x + SA(LN1(x)); out = h + FF(LN2(h))
        y1, c_ln1 = ln(x, "norm1")
        a, c_sa = sa_forward(y1, P, H, allowed, bias_add)
        h = x + a
        y2, c_ln2 = ln(h, "norm2")
        f, c_ff = ff_forward(y2, P, kind)
        out = h + f
        dh = d_out + ln_backward(ff_backward(d_out, c_ff, P, kind, g), c_ln2, g, "norm2")
        d_y1, bk_floor = sa_backward(dh, c_sa, P, g)
        d_src = dh + ln_backward(d_y1, c_ln1, g, "norm1")
    else:  # h = LN1(x + SA(x)); out = LN2(h + FF(h))
        a, c_sa = sa_forward(x, P, H, allowed, bias_add)
        h, c_ln1 = ln(x + a, "norm1")
        f, c_ff = ff_forward(h, P, kind)
        out, c_ln2 = ln(h + f, "norm2")
        d_r2 = ln_backward(d_out, c_ln2, g, "norm2")
        d_r1 = ln_backward(d_r2 + ff_backward(d_r2, c_ff, P, kind, g), c_ln1, g, "norm1")
        d_x_sa, bk_floor = sa_backward(d_r1, c_sa, P, g)
        d_src = d_r1 + d_x_sa
    return out, d_src, g, bk_floor, c_ff[1]


# ---------------------------------------------------------------- masks, cases

def draw_params(layout, blocks):
    """Overwrites the blocks with float32 values (used in float64), by kind."""
    with torch.no_grad():
        for (bname, shape), b in zip(layout, blocks):
            if len(shape) == 2:
                bound = float(np.sqrt(6.0 / (shape[0] + shape[1])))
                lo, hi = -bound, bound
            elif bname.endswith(".weight"):  # a layer norm's scale: around 1, never near 0
                lo, hi = 0.5, 1.5
            else:
                lo, hi = -0.5, 0.5
            b.copy_(torch.empty(shape).uniform_(lo, hi).double())


def make_case(index, cfg):
    seed = BASE_SEED + index
    rng = seed_all(seed)
    name, d, H, ff, kind, norm_first, B, L = (
        cfg[x] for x in ("name", "d", "H", "ff", "act", "norm_first", "B", "L"))
    eps = cfg.get("eps", 1e-5)
    layer = torch.nn.TransformerEncoderLayer(d, H, ff, dropout=0.0, activation=kind,
                                             layer_norm_eps=eps, batch_first=True,
                                             norm_first=norm_first, dtype=torch.float64)
    layer.train()  # dropout is 0; training mode keeps torch off its inference fast path
    layout = param_layout(d, ff)
    blocks = torch_blocks(layer)
    assert [tuple(b.shape) for b in blocks] == [s for _, s in layout], name
    draw_params(layout, blocks)
    flat64 = np.concatenate([b.detach().numpy().reshape(-1) for b in blocks])
    params32 = flat64.astype(np.float32)
    assert np.array_equal(params32.astype(np.float64), flat64)
    # the flat vector is named_parameters() flattened, in order
    assert np.array_equal(flat64, np.concatenate(
        [p.detach().numpy().reshape(-1) for _, p in layer.named_parameters()]))

    src_scale = cfg.get("src_scale", 1.0)
    x32 = torch.randn(B, L, d) * src_scale  # a float32 product: float32 values still
    do32 = torch.randn(B, L, d)
    mask_rng = np.random.default_rng(BASE_SEED + index)
    allowed, bias_add, src_mask_t, key_padding_t, masks = make_masks(cfg, B, H, L, L, mask_rng)

    # float64 torch autograd.
    src = x32.double().requires_grad_()
    d_out = do32.double()
    forward = lambda: layer(src, src_mask=src_mask_t, src_key_padding_mask=key_padding_t)
    out = forward()
    assert out.dtype == torch.float64 and out.shape == (B, L, d), name
    assert out.grad_fn is not None, name + ": torch took a path without autograd"
    out.backward(d_out)
    out_t = out.detach().numpy().copy()
    d_src_t = src.grad.numpy().copy()
    d_par_t = grad_blocks(layer)
    check_finite(name, [out_t, d_src_t] + d_par_t)

    # The NumPy float64 formula.
    P = {bname: b.detach().numpy() for (bname, _), b in zip(layout, blocks)}
    ref_out, ref_d_src, ref_g, bk_floor, pre_act = numpy_reference(
        x32.double().numpy(), d_out.numpy(), P, H, kind, norm_first, eps, allowed, bias_add)
    floors = [bk_floor if bname == "bk" else 0.0 for bname, _ in layout]
    np_err = {"out": rel_error(out_t, ref_out), "d_src": rel_error(d_src_t, ref_d_src)}
    np_err.update(("d_" + bname, rel_error(t, ref_g[bname], f))
                  for (bname, _), t, f in zip(layout, d_par_t, floors))
    check_errors(name, "the NumPy formula", np_err, NUMPY_TOL)
    assert np.max(np.abs(d_par_t[[n for n, _ in layout].index("bk")])) <= 1e-12 * bk_floor, name

    # Central finite differences of L = sum(out * d_out) in float64 torch.
    loss = dot_loss(forward, d_out)
    indices = None if cfg.get("fd_all", False) else fd_sample(rng, FD_SAMPLES)
    with torch.no_grad():
        fd_par, n_par = finite_differences(loss, [b.data for b in blocks], d_par_t, floors,
                                           FD_STEP, indices)
        # src's step scales with it: LN1's curvature grows as 1 / src_scale
        fd_in, n_in = finite_differences(loss, [src.data], [d_src_t], [0.0],
                                         FD_STEP * src_scale, indices)
    fd_err = dict(("d_" + bname, e) for (bname, _), e in zip(layout, fd_par))
    fd_err["d_src"] = fd_in[0]
    check_errors(name, "finite differences", fd_err, FD_TOL)
    check_restored(name, loss, out, d_out)

    folder = case_folder(OUT_DIR, name)
    files = {"params": write_bin(folder, "params", params32, np.float32),
             "src": write_bin(folder, "src", x32.numpy(), np.float32),
             "d_out": write_bin(folder, "d_out", do32.numpy(), np.float32),
             "out": write_bin(folder, "out", out_t, np.float64),
             "d_src": write_bin(folder, "d_src", d_src_t, np.float64)}
    d_params = np.concatenate([gr.reshape(-1) for gr in d_par_t])
    files["d_params"] = write_bin(folder, "d_params", d_params, np.float64)
    param_blocks, offset = [], 0
    for (bname, shape), floor in zip(layout, floors):
        param_blocks.append(dict(name=bname, offset=offset, shape=list(shape), floor=floor))
        offset += int(np.prod(shape))
    assert offset == params32.size == d_params.size == 4 * d * d + 4 * d + 2 * d * ff + ff \
        + d + 4 * d
    torch_desc = dict(
        src_key_padding_mask=None if key_padding_t is None
        else "bool [batch, len], True = padding",
        src_mask=None if src_mask_t is None else "%s %s%s" % (
            "bool (True = masked out)" if src_mask_t.dtype == torch.bool
            else "float64 (additive)", list(src_mask_t.shape),
            ", causal upper triangle merged in" if cfg.get("causal") else ""))
    case = dict(
        name=name, generator="tests/data/gen_torch_encoder_vectors.py",
        torch_version=torch.__version__, seed=seed, d_model=d, nhead=H, dim_feedforward=ff,
        activation=ACTIVATIONS[kind], norm_first=int(norm_first), layer_norm_eps=eps,
        batch=B, len=L, src_scale=src_scale,
        causal=ATTN_CAUSAL_TOP_LEFT if cfg.get("causal") else ATTN_CAUSAL_NONE,
        param_count=int(params32.size), param_blocks=param_blocks,
        masks=write_masks(folder, masks),
        files=files, torch_call=torch_desc,
        numpy_check=error_fields(np_err),
        finite_difference_check=dict(step=FD_STEP, src_step=FD_STEP * src_scale,
                                     params_checked=n_par, inputs_checked=n_in,
                                     **error_fields(fd_err)))
    write_case(folder, case)
    kink = " min|relu input| %.1e" % float(np.min(np.abs(pre_act))) if kind == "relu" else ""
    print("%-20s %5d params; torch vs NumPy worst %.1e; finite differences: %5d params, "
          "%4d inputs, worst %.1e%s" % (name, params32.size, max(np_err.values()), n_par, n_in,
                                        max(fd_err.values()), kink))
    return max(np_err.values()), max(fd_err.values())


def main():
    results = generate(OUT_DIR, 300 * 1024, (make_case, CONFIGS))
    print("worst over the set: torch vs NumPy %.1e, finite differences %.1e"
          % tuple(max(r[i] for r in results) for i in range(2)))


if __name__ == "__main__":
    main()
