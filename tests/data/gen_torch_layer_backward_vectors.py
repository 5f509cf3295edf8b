#!/usr/bin/python3
"""Golden gradients of D2L's additive attention and Nadaraya-Watson kernel
regression, by PyTorch autograd in float64, for
tests/test_layer_backward_torch.c (attn_additive_forward_train +
attn_additive_backward, attn_nadaraya_watson + attn_nadaraya_watson_backward).

Additive cases ("kind": "additive") build D2L's section 10.3.2 module in
torch, op for op (dropout 0: D2L's example runs it in eval mode):

    class AdditiveAttention(nn.Module):          # key_size, query_size, hidden
        W_k = nn.Linear(key_size, hidden, bias=False)
        W_q = nn.Linear(query_size, hidden, bias=False)
        w_v = nn.Linear(hidden, 1, bias=False)
        forward(queries, keys, values, valid_lens, keep):
            queries, keys = W_q(queries), W_k(keys)
            features = torch.tanh(queries.unsqueeze(2) + keys.unsqueeze(1))
            scores = w_v(features).squeeze(-1)
            return torch.bmm(masked_softmax(scores, valid_lens, keep), values)

with D2L's masked_softmax (section 10.3.1: valid_lens [B] per batch row or
[B, Lq] per query, the masked scores set to -1e6 by sequence_mask), extended
by a boolean keep mask (masked_fill(~keep, -1e6)) for the keep-mask case.
The module is made in float32 with torch's default nn.Linear initialisation
(fixed seeds), so the weights are float32 values, then converted to float64
(.double()). Inputs and d_out are float32 values used in float64. Then

    out = attention(queries, keys, values, valid_lens, keep)
    out.backward(d_out)

leaves the gradients in queries.grad, keys.grad, values.grad and in W_q, W_k
and w_v's .grad. In the case "keys_are_values" one tensor is passed as keys
and values (D2L does so in its Bahdanau decoder), and its .grad is the sum
of the two gradients; the C test passes the same pointer as d_keys and
d_values and compares with that sum.

The parameters are stored as one flat vector in libattn's order (the layout
of attn_additive_get_params / set_params and of attn_additive_backward's
d_params): W_q [hidden, query_dim], W_k [hidden, key_dim], w_v [hidden]
(W_q.weight, W_k.weight and w_v.weight flattened; D2L's state_dict lists
W_k first, so it is mapped by name here, not by position).

Masks are written in libattn's terms: valid_lens as kv_lengths (int64, [B]
with per_query 0 or [B, Lq] with per_query 1), the keep mask as a uint8
[B, 1, Lq, Lkv] (1 = attend; libattn's additive mask has a heads dimension
of 1). No query row is left without a visible key (torch would give a
uniform row from the -1e6 there, libattn zeros; neither is tested here).

Nadaraya-Watson cases ("kind": "nadaraya_watson") are D2L's section 10.2.4
NWKernelRegression, op for op, with w a float64 leaf holding a float32
value:

    queries = queries.repeat_interleave(keys.shape[1]).reshape(-1, keys.shape[1])
    attention_weights = softmax(-((queries - keys) * w)**2 / 2, dim=1)
    out = torch.bmm(attention_weights.unsqueeze(1), values.unsqueeze(-1)).reshape(-1)

with keys = x_train.repeat((n_queries, 1)), values = y_train.repeat(...):
every query sees the same keys, as D2L does at test time. (D2L trains w
with each training point leaving itself out, keys [n, n - 1] per query;
attn_nadaraya_watson shares one key set among all queries, so that form is
not expressible and not tested.) Autograd through the repeat sums the
gradients of the tiles, giving d_keys and d_values [n_keys]; d_w is w.grad.

Every case is written to tests/data/layer_backward/<name>/ as

  case.json   the kind and sizes, the masks, which file holds which tensor
              (shape, dtype, and for every expected gradient its "floor",
              see below), the parameter blocks (name, offset, shape, floor),
              and the results of the checks made here;
  *.bin       raw little-endian tensors:
                additive: params [count], queries [B, Lq, query_dim],
                          keys [B, Lkv, key_dim], values [B, Lkv, dim_v],
                          d_out [B, Lq, dim_v]               float32
                          (keys_are_values: one kv.bin for both)
                          kv_lengths / keep                  int64 / uint8
                          out, d_queries, d_keys, d_values,
                          d_params                           float64
                          (keys_are_values: one d_kv.bin, the sum)
                NW:       queries [n_queries], keys, values [n_keys],
                          d_out [n_queries]                  float32
                          out, d_queries, d_keys, d_values,
                          d_w [1]                            float64
              w, a float32 value, is in case.json (exact as a JSON double).

Floors. A gradient block can be exactly 0 in exact arithmetic while its
terms are not: in D2L's own example every key is the same vector (keys =
torch.ones), so all weights of a row are equal and t_ij = tanh(W_q q_i +
W_k k_j) does not depend on j; then sum_j dS_ij = 0 makes d_queries, d_W_q,
d_W_k (keys are all ones) and d_w_v exactly 0, and torch's goldens are
float64 rounding noise (0 to ~2e-16). Normalising an error by such a
block's own maximum would be meaningless, so each gradient tensor and
parameter block carries a floor, and the C test normalises by |e| + max(max|e|, floor). The
floor is 0 unless the block cancels: a block cancels when its largest
golden is below 1e-10 times its "term magnitude", the same formula as the
gradient with every factor replaced by its absolute value and dS_ij =
P_ij (dP_ij - D_i) by P_ij (|dP_ij| + |D_i|) (the terms whose cancellation
makes sum_j dS_ij = 0); the floor is then the largest term magnitude of the
block. Each case lists the blocks it expects to cancel ("cancels"), and the
script fails when the blocks found differ. case.json records, for every
block, max|golden| / max(term magnitude) as "cancellation" (1 = no
cancellation at all).

Before anything is written, for every case:
  * torch's out and gradients are checked against a plain NumPy float64
    recomputation of the analytic formulas (attn.h's comments of
    attn_additive_backward and attn_nadaraya_watson_backward) to
    |t - r| <= 1e-10 (|r| + max(max|r|, floor)) per tensor and block;
  * torch's gradients are checked against central finite differences of
    L = sum(out * d_out) in float64 torch (step 1e-5) for every element of
    every input, parameter block and w, to |fd - g| <= 1e-7 (|g| +
    max(max|g|, floor)) per tensor and block.
The script fails (AssertionError) otherwise.

Regenerate (Debian's python3-torch 1.13 and python3-numpy), from the source
root (the script imports golden_io.py, beside it, for the shared helpers):

    /usr/bin/python3 tests/data/gen_torch_layer_backward_vectors.py

It replaces tests/data/layer_backward/ entirely.
"""
import numpy as np
import torch
from torch import nn

from golden_io import case_folder, check_errors, check_finite, check_restored, dot_loss, \
    error_fields, finite_differences, generate, out_dir, rel_error, seed_all, write_bin, \
    write_case, write_masks

OUT_DIR = out_dir("layer_backward")
BASE_SEED = 20250417
NUMPY_TOL = 1e-10   # torch vs the NumPy formula
FD_TOL = 1e-7       # torch vs central finite differences
FD_STEP = 1e-5
CANCEL_RATIO = 1e-10  # a block whose golden is below this times its terms cancels
MASK_VALUE = -1e6   # D2L's masked_softmax

# Additive: sizes (query_dim qd, key_dim kd, hidden H, batch B, Lq, Lkv, dim_v
# Dv), the masks (lengths: a list [B] per batch row, "per_query" [B, Lq]
# random; keep: a random [B, 1, Lq, Lkv] keep mask), keys_are_values, d2l
# (D2L's example tensors: keys all ones, values arange(40)), and the blocks
# expected to cancel.
ADDITIVE = [
    dict(name="additive_d2l_example", qd=20, kd=2, H=8, B=2, Lq=1, Lkv=10, Dv=4,
         lengths=[2, 6], d2l=True, cancels=["d_queries", "W_q", "W_k", "w_v"]),
    dict(name="additive_d2l_shape", qd=20, kd=2, H=8, B=2, Lq=1, Lkv=10, Dv=4,
         lengths=[2, 6]),
    dict(name="additive_per_query", qd=6, kd=5, H=8, B=2, Lq=5, Lkv=7, Dv=3,
         lengths="per_query"),
    dict(name="additive_keep_mask", qd=7, kd=4, H=6, B=2, Lq=4, Lkv=6, Dv=5, keep=True),
    dict(name="additive_keys_are_values", qd=4, kd=6, H=10, B=2, Lq=3, Lkv=5, Dv=6,
         lengths=[5, 3], keys_are_values=True),
    dict(name="additive_batch3", qd=12, kd=7, H=16, B=3, Lq=6, Lkv=9, Dv=5),
]

# Nadaraya-Watson: D2L section 10.2's data (50 sorted x_train in [0, 5),
# y = 2 sin x + x^0.8 + N(0, 0.5), x_test = arange(0, 5, 0.1), d_out the
# gradient of 0.5 sum (out - f(x_test))^2) with width w, or random points.
NADARAYA_WATSON = [
    dict(name="nw_d2l_w1", d2l=True, w=1.0),
    dict(name="nw_d2l_w3_7", d2l=True, w=3.7),
    dict(name="nw_random", n_queries=17, n_keys=23, w=-1.3),
]


def floors_for(name, grads, terms, expected):
    """{block: floor} and {block: cancellation ratio}; fails unless the blocks
    that cancel are exactly `expected`."""
    floors, ratios, found = {}, {}, []
    for key, g in grads.items():
        term = float(np.max(terms[key]))
        ratio = float(np.max(np.abs(g))) / term if term > 0 else 1.0
        ratios[key] = ratio
        floors[key] = term if ratio <= CANCEL_RATIO else 0.0
        if ratio <= CANCEL_RATIO:
            found.append(key)
    if sorted(found) != sorted(expected):
        raise AssertionError("%s: blocks that cancel %s, expected %s" % (name, found, expected))
    return floors, ratios


def check_gradients(name, cfg, out_t, ref_out, g_t, ref_g, terms, forward, d_out, out, leaves,
                    leaf_keys):
    """The checks of a case: torch's out and gradients g_t {block: array}
    against the NumPy formula's (with the floors of the blocks that cancel),
    then against central finite differences of L = sum(out * d_out) for
    every element of the leaves (torch tensors, whose gradients are
    g_t[leaf_keys[i]]). Returns the floors, the cancellation ratios, the
    NumPy and finite-difference errors and the number of elements checked."""
    floors, ratios = floors_for(name, g_t, terms, cfg.get("cancels", []))
    np_err = {"out": rel_error(out_t, ref_out)}
    np_err.update((key, rel_error(g_t[key], ref_g[key], floors[key])) for key in g_t)
    check_errors(name, "the NumPy formula", np_err, NUMPY_TOL)
    loss = dot_loss(forward, d_out)
    with torch.no_grad():
        fd, n_fd = finite_differences(loss, leaves, [g_t[k_] for k_ in leaf_keys],
                                      [floors[k_] for k_ in leaf_keys], FD_STEP)
    fd_err = dict(zip(leaf_keys, fd))
    check_errors(name, "finite differences", fd_err, FD_TOL)
    check_restored(name, loss, out, d_out)
    return floors, ratios, np_err, fd_err, n_fd


def check_fields(np_err, fd_err, n_fd):
    """case.json's numpy_check and finite_difference_check."""
    return dict(numpy_check=error_fields(np_err), finite_difference_check=dict(
        step=FD_STEP, elements_checked=n_fd, **error_fields(fd_err)))


# ---------------------------------------------------------------- additive

def sequence_mask(X, valid_len, value=0):
    """D2L section 9.7 (used by masked_softmax): X[i, j] = value for j >= valid_len[i]."""
    maxlen = X.size(1)
    mask = torch.arange(maxlen, dtype=torch.float32, device=X.device)[None, :] < valid_len[:, None]
    X[~mask] = value
    return X


def masked_softmax(X, valid_lens, keep=None):
    """D2L section 10.3.1's masked_softmax, plus an optional bool keep mask
    [B, Lq, Lkv] (False = masked, the same -1e6)."""
    if keep is not None:
        X = X.masked_fill(~keep, MASK_VALUE)
    if valid_lens is None:
        return nn.functional.softmax(X, dim=-1)
    shape = X.shape
    if valid_lens.dim() == 1:
        valid_lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    X = sequence_mask(X.reshape(-1, shape[-1]), valid_lens, value=MASK_VALUE)
    return nn.functional.softmax(X.reshape(shape), dim=-1)


class AdditiveAttention(nn.Module):
    """D2L section 10.3.2 (dropout 0)."""

    def __init__(self, key_size, query_size, num_hiddens):
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)

    def forward(self, queries, keys, values, valid_lens, keep=None):
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = queries.unsqueeze(2) + keys.unsqueeze(1)
        features = torch.tanh(features)
        scores = self.w_v(features).squeeze(-1)
        self.attention_weights = masked_softmax(scores, valid_lens, keep)
        return torch.bmm(self.attention_weights, values)


def additive_numpy(q, k, v, d_out, Wq, Wk, wv, allowed):
    """The analytic forward and backward (attn.h, attn_additive_backward), and
    the term magnitudes of every gradient (the same products of absolute
    values, with P (|dP| + |D|) for dS)."""
    qh, kh = q @ Wq.T, k @ Wk.T
    t = np.tanh(qh[:, :, None, :] + kh[:, None, :, :])         # [B, Lq, Lkv, H]
    s = np.where(allowed, t @ wv, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    P = e / e.sum(axis=-1, keepdims=True)
    out = P @ v
    dP = d_out @ v.transpose(0, 2, 1)
    D = (d_out * out).sum(axis=-1, keepdims=True)
    dS = P * (dP - D)
    dSa = P * (np.abs(dP) + np.abs(D))
    sech2 = 1.0 - t * t
    G, Ga = dS[..., None] * wv * sech2, dSa[..., None] * np.abs(wv) * sech2
    dqh, dkh, dqh_a, dkh_a = G.sum(axis=2), G.sum(axis=1), Ga.sum(axis=2), Ga.sum(axis=1)
    flat = lambda x: x.reshape(-1, x.shape[-1])
    g = dict(d_queries=dqh @ Wq, d_keys=dkh @ Wk, d_values=P.transpose(0, 2, 1) @ d_out,
             W_q=flat(dqh).T @ flat(q), W_k=flat(dkh).T @ flat(k),
             w_v=(dS[..., None] * t).sum(axis=(0, 1, 2)))
    terms = dict(d_queries=dqh_a @ np.abs(Wq), d_keys=dkh_a @ np.abs(Wk),
                 d_values=P.transpose(0, 2, 1) @ np.abs(d_out),
                 W_q=flat(dqh_a).T @ flat(np.abs(q)), W_k=flat(dkh_a).T @ flat(np.abs(k)),
                 w_v=(dSa[..., None] * np.abs(t)).sum(axis=(0, 1, 2)))
    return out, g, terms


def make_additive(index, cfg):
    seed = BASE_SEED + index
    rng = seed_all(seed)
    name, qd, kd, H, B, Lq, Lkv, Dv = (cfg[x] for x in
                                       ("name", "qd", "kd", "H", "B", "Lq", "Lkv", "Dv"))
    kv_same = cfg.get("keys_are_values", False)
    assert not kv_same or kd == Dv
    attention = AdditiveAttention(kd, qd, H)  # float32, torch's default initialisation
    params32 = np.concatenate([attention.W_q.weight.detach().numpy().reshape(-1),
                               attention.W_k.weight.detach().numpy().reshape(-1),
                               attention.w_v.weight.detach().numpy().reshape(-1)])
    attention = attention.double()
    blocks = [("W_q", attention.W_q.weight, (H, qd)), ("W_k", attention.W_k.weight, (H, kd)),
              ("w_v", attention.w_v.weight, (H,))]
    assert params32.size == H * (qd + kd + 1)
    assert np.array_equal(params32.astype(np.float64), np.concatenate(
        [b.detach().numpy().reshape(-1) for _, b, _ in blocks]))

    if cfg.get("d2l"):  # D2L section 10.3.2's example tensors
        q32 = torch.normal(0, 1, (B, Lq, qd))
        k32 = torch.ones((B, Lkv, kd))
        v32 = torch.arange(Lkv * Dv, dtype=torch.float32).reshape(1, Lkv, Dv).repeat(B, 1, 1)
    else:
        q32, k32 = torch.randn(B, Lq, qd), torch.randn(B, Lkv, kd)
        v32 = k32 if kv_same else torch.randn(B, Lkv, Dv)
    do32 = torch.randn(B, Lq, Dv)

    # The masks: torch's valid_lens / keep, libattn's, and `allowed` [B, Lq, Lkv].
    allowed = np.ones((B, Lq, Lkv), dtype=bool)
    masks, valid_lens, keep_t = [], None, None
    lengths = cfg.get("lengths")
    if lengths == "per_query":
        lens = rng.integers(1, Lkv + 1, size=(B, Lq))
        lens[0, 0], lens[-1, -1] = 1, Lkv  # a row that sees one key, one that sees all
        masks.append(("kv_lengths", 1, lens.astype(np.int64), np.int64))
        valid_lens = torch.from_numpy(lens.astype(np.int64))
        allowed &= np.arange(Lkv)[None, None, :] < lens[:, :, None]
    elif lengths is not None:
        lens = np.array(lengths, dtype=np.int64)
        assert lens.shape == (B,) and lens.min() >= 1 and lens.max() <= Lkv
        masks.append(("kv_lengths", 0, lens, np.int64))
        valid_lens = torch.from_numpy(lens)
        allowed &= np.arange(Lkv)[None, None, :] < lens[:, None, None]
    if cfg.get("keep"):
        keep = rng.random((B, Lq, Lkv)) < 0.6
        sure = rng.integers(0, Lkv, size=(B, Lq))  # one visible key per row stays
        keep[np.arange(B)[:, None], np.arange(Lq)[None, :], sure] = True
        keep[0, 0, :] = False  # a row that sees one key
        keep[0, 0, sure[0, 0]] = True
        masks.append(("bool", 0, keep.reshape(B, 1, Lq, Lkv).astype(np.uint8), np.uint8))
        keep_t = torch.from_numpy(keep)
        allowed &= keep
    assert allowed.any(axis=-1).all(), name + ": a query row sees no key"

    # float64 torch autograd.
    if kv_same:
        inputs = [q32.double().requires_grad_(), k32.double().requires_grad_()]
        queries, keys = inputs
        values = keys
    else:
        inputs = [t.double().requires_grad_() for t in (q32, k32, v32)]
        queries, keys, values = inputs
    d_out = do32.double()
    forward = lambda: attention(queries, keys, values, valid_lens, keep_t)
    out = forward()
    assert out.dtype == torch.float64 and out.shape == (B, Lq, Dv), name
    out.backward(d_out)
    out_t = out.detach().numpy().copy()
    g_t = dict(d_queries=queries.grad.numpy().copy(), d_keys=keys.grad.numpy().copy())
    if not kv_same:
        g_t["d_values"] = values.grad.numpy().copy()
    g_t.update((bname, b.grad.numpy().reshape(shape).copy()) for bname, b, shape in blocks)
    check_finite(name, [out_t] + list(g_t.values()))

    # The NumPy formula and the term magnitudes (keys = values: the sum).
    P = {bname: b.detach().numpy().reshape(shape) for bname, b, shape in blocks}
    ref_out, ref_g, terms = additive_numpy(q32.double().numpy(), k32.double().numpy(),
                                           v32.double().numpy(), d_out.numpy(), P["W_q"],
                                           P["W_k"], P["w_v"], allowed)
    if kv_same:
        ref_g["d_keys"] = ref_g["d_keys"] + ref_g.pop("d_values")
        terms["d_keys"] = terms["d_keys"] + terms.pop("d_values")
    # The checks: torch against that formula, then against central finite
    # differences of L = sum(out * d_out), every element.
    leaves = [b.data for _, b, _ in blocks] + [t.data for t in inputs]
    leaf_keys = [bname for bname, _, _ in blocks] + list(g_t)[:len(inputs)]
    floors, ratios, np_err, fd_err, n_fd = check_gradients(
        name, cfg, out_t, ref_out, g_t, ref_g, terms, forward, d_out, out, leaves, leaf_keys)

    folder = case_folder(OUT_DIR, name)
    files = {"params": write_bin(folder, "params", params32, np.float32),
             "queries": write_bin(folder, "queries", q32.numpy(), np.float32)}
    if kv_same:
        files["keys"] = files["values"] = write_bin(folder, "kv", k32.numpy(), np.float32)
    else:
        files["keys"] = write_bin(folder, "keys", k32.numpy(), np.float32)
        files["values"] = write_bin(folder, "values", v32.numpy(), np.float32)
    files["d_out"] = write_bin(folder, "d_out", do32.numpy(), np.float32)
    files["out"] = write_bin(folder, "out", out_t, np.float64)
    files["d_queries"] = write_bin(folder, "d_queries", g_t["d_queries"], np.float64,
                                   floors["d_queries"])
    if kv_same:
        files["d_keys"] = files["d_values"] = write_bin(folder, "d_kv", g_t["d_keys"],
                                                        np.float64, floors["d_keys"])
    else:
        files["d_keys"] = write_bin(folder, "d_keys", g_t["d_keys"], np.float64,
                                    floors["d_keys"])
        files["d_values"] = write_bin(folder, "d_values", g_t["d_values"], np.float64,
                                      floors["d_values"])
    d_params = np.concatenate([g_t[bname].reshape(-1) for bname, _, _ in blocks])
    files["d_params"] = write_bin(folder, "d_params", d_params, np.float64)
    param_blocks, offset = [], 0
    for bname, _, shape in blocks:
        param_blocks.append(dict(name=bname, offset=offset, shape=list(shape),
                                 floor=floors[bname]))
        offset += int(np.prod(shape))
    case = dict(
        name=name, kind="additive", generator="tests/data/gen_torch_layer_backward_vectors.py",
        torch_version=torch.__version__, seed=seed, query_dim=qd, key_dim=kd, hidden=H,
        batch=B, len_q=Lq, len_kv=Lkv, dim_v=Dv, keys_are_values=bool(kv_same),
        d2l_example_tensors=bool(cfg.get("d2l")), param_count=int(params32.size),
        param_blocks=param_blocks, masks=write_masks(folder, masks), files=files,
        torch_call="D2L AdditiveAttention(key_size=%d, query_size=%d, num_hiddens=%d), "
                   "valid_lens %s, keep mask %s" % (
                       kd, qd, H, None if valid_lens is None else list(valid_lens.shape),
                       None if keep_t is None else list(keep_t.shape)),
        cancellation=ratios, **check_fields(np_err, fd_err, n_fd))
    write_case(folder, case)
    print("%-26s %4d params; cancels %-32s torch vs NumPy worst %.1e; finite differences: "
          "%4d elements, worst %.1e" % (name, params32.size, ",".join(cfg.get("cancels", []))
                                        or "-", max(np_err.values()), n_fd,
                                        max(fd_err.values())))
    return n_fd, max(fd_err.values())


# ---------------------------------------------------------------- Nadaraya-Watson

class NWKernelRegression(nn.Module):
    """D2L section 10.2.4 (w a float64 parameter holding a float32 value)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))

    def forward(self, queries, keys, values):
        queries = queries.repeat_interleave(keys.shape[1]).reshape((-1, keys.shape[1]))
        self.attention_weights = nn.functional.softmax(
            -((queries - keys) * self.w)**2 / 2, dim=1)
        return torch.bmm(self.attention_weights.unsqueeze(1), values.unsqueeze(-1)).reshape(-1)


def nw_numpy(x, k, v, d_out, w):
    """attn.h's attn_nadaraya_watson_backward formulas, and the term
    magnitudes (|dS| replaced by a (|d_out| (|v| + |out|)))."""
    diff = x[:, None] - k[None, :]
    s = -(diff * w)**2 / 2
    e = np.exp(s - s.max(axis=1, keepdims=True))
    a = e / e.sum(axis=1, keepdims=True)
    out = a @ v
    dS = a * d_out[:, None] * (v[None, :] - out[:, None])
    dSa = a * np.abs(d_out[:, None]) * (np.abs(v[None, :]) + np.abs(out[:, None]))
    g = dict(d_queries=-(dS * diff).sum(axis=1) * w * w, d_keys=(dS * diff).sum(axis=0) * w * w,
             d_values=(a * d_out[:, None]).sum(axis=0),
             d_w=np.array([-(dS * diff * diff).sum() * w]))
    terms = dict(d_queries=(dSa * np.abs(diff)).sum(axis=1) * w * w,
                 d_keys=(dSa * np.abs(diff)).sum(axis=0) * w * w,
                 d_values=(a * np.abs(d_out[:, None])).sum(axis=0),
                 d_w=np.array([(dSa * diff * diff).sum() * abs(w)]))
    return out, g, terms


def make_nw(index, cfg):
    seed = BASE_SEED + 100 + index
    torch.manual_seed(seed)
    name = cfg["name"]
    w32 = float(np.float32(cfg["w"]))
    f = lambda x: 2 * torch.sin(x) + x**0.8
    if cfg.get("d2l"):  # D2L section 10.2.1's data, float32
        n_train = 50
        x_train, _ = torch.sort(torch.rand(n_train) * 5)
        y_train = f(x_train) + torch.normal(0.0, 0.5, (n_train,))
        x_test = torch.arange(0, 5, 0.1)
        x32, k32, v32 = x_test, x_train, y_train
    else:
        x32, k32 = 2 * torch.randn(cfg["n_queries"]), 2 * torch.randn(cfg["n_keys"])
        x32[0] = 12.0  # far from every key: the shifted softmax
        v32 = torch.randn(cfg["n_keys"])
    nq, nk = x32.numel(), k32.numel()
    assert x32.dtype == k32.dtype == v32.dtype == torch.float32

    net = NWKernelRegression(w32)
    inputs = [t.double().requires_grad_() for t in (x32, k32, v32)]
    queries, keys, values = inputs
    forward = lambda: net(queries, keys.repeat((nq, 1)), values.repeat((nq, 1)))
    out = forward()
    if cfg.get("d2l"):  # d(0.5 sum (out - f(x_test))^2) / d out, rounded to float32
        do32 = (out.detach() - f(x32.double())).float()
    else:
        do32 = torch.randn(nq)
    d_out = do32.double()
    out.backward(d_out)
    out_t = out.detach().numpy().copy()
    g_t = dict(d_queries=queries.grad.numpy().copy(), d_keys=keys.grad.numpy().copy(),
               d_values=values.grad.numpy().copy(), d_w=net.w.grad.numpy().copy())
    check_finite(name, [out_t] + list(g_t.values()))

    ref_out, ref_g, terms = nw_numpy(x32.double().numpy(), k32.double().numpy(),
                                     v32.double().numpy(), d_out.numpy(), w32)
    leaf_keys = ["d_queries", "d_keys", "d_values", "d_w"]
    floors, ratios, np_err, fd_err, n_fd = check_gradients(
        name, cfg, out_t, ref_out, g_t, ref_g, terms, forward, d_out, out,
        [t.data for t in inputs] + [net.w.data], leaf_keys)

    folder = case_folder(OUT_DIR, name)
    files = dict((key_, write_bin(folder, key_, t.numpy(), np.float32)) for key_, t in
                 (("queries", x32), ("keys", k32), ("values", v32), ("d_out", do32)))
    files["out"] = write_bin(folder, "out", out_t, np.float64)
    for key_ in leaf_keys:
        files[key_] = write_bin(folder, key_, g_t[key_], np.float64, floors[key_])
    case = dict(
        name=name, kind="nadaraya_watson",
        generator="tests/data/gen_torch_layer_backward_vectors.py",
        torch_version=torch.__version__, seed=seed, n_queries=nq, n_keys=nk, w=w32,
        d2l_data=bool(cfg.get("d2l")), files=files,
        torch_call="D2L NWKernelRegression, keys = x_train.repeat((n_queries, 1)), "
                   "values = y_train.repeat((n_queries, 1))",
        cancellation=ratios, **check_fields(np_err, fd_err, n_fd))
    write_case(folder, case)
    print("%-26s w %5.2f, %d queries, %d keys; d_w cancellation %.2g; torch vs NumPy worst "
          "%.1e; finite differences: %4d elements, worst %.1e"
          % (name, w32, nq, nk, ratios["d_w"], max(np_err.values()), n_fd,
             max(fd_err.values())))
    return n_fd, max(fd_err.values())


def main():
    results = generate(OUT_DIR, 200 * 1024, (make_additive, ADDITIVE),
                       (make_nw, NADARAYA_WATSON))
    print("%d elements checked by finite differences (worst %.1e)"
          % (sum(n for n, _ in results), max(e for _, e in results)))


if __name__ == "__main__":
    main()
