#!/usr/bin/env python3
"""python/attn.py, the ctypes module, against NumPy on random inputs.

The references below are written plainly in float64 from the formulas of
attn.h and its parts (softmax of scale·QKᵀ + bias over the visible keys, the
score modifiers, dropout's Philox 4x32-10, RoPE, layer normalisation;
PyTorch's nn.MultiheadAttention and nn.TransformerEncoderLayer for the
layers). Gradients are checked against central differences of those float64
references, never against libattn's own output.

The module is found beside this checkout (../python), or, with
ATTN_TEST_MODULE=installed, wherever `import attn` finds it (a pip or Debian
install: the test then refuses the tree's copy). The library is
$ATTN_LIBRARY, else libattn.so.1.

Exit status 77 (Meson's "skipped") when NumPy is not installed.
"""
import gc
import math
import os
import re
import sys
import unittest
from unittest import mock

try:
    import numpy as np
except ImportError:
    print("test_python: NumPy is not installed (Debian: python3-numpy): skipped")
    sys.exit(77)

TREE_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
if os.environ.get("ATTN_TEST_MODULE") != "installed":
    sys.path.insert(0, TREE_MODULE)
import attn  # noqa: E402

if os.environ.get("ATTN_TEST_MODULE") == "installed" and \
        os.path.dirname(os.path.realpath(attn.__file__)) == os.path.realpath(TREE_MODULE):
    sys.exit(f"test_python: ATTN_TEST_MODULE=installed, but attn is the tree's {attn.__file__}")
print(f"test_python: attn {attn.version()} from {attn.__file__}", file=sys.stderr)

TOL = 2e-5


def ref_sdpa(q, k, v, visible=None, bias=None, scale=None, *, causal=None, window=(-1, -1),
             softcap=0.0, slopes=None, keep=None, p=0.0):
    """float64 reference, [B, Hq, Lq, D] inputs; visible [B, Hq, Lq, Lkv] bool.
    The score modifiers of attn_modifiers.h measured from the aligned
    position pos (i with top-left causal, i + Lkv - Lq otherwise): softcap,
    then bias, then ALiBi (slopes [Hq]), and the window; dropout keep
    [B, Hq, Lq, Lkv] with probability p scales the weights by keep / (1 - p).
    Returns out, the (dropped) weights, lse."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    lq, lkv = q.shape[2], k.shape[2]
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    logits = scale * q @ k.swapaxes(-1, -2)
    if softcap:
        logits = softcap * np.tanh(logits / softcap)
    if bias is not None:
        logits = logits + bias
    i, j = np.arange(lq)[:, None], np.arange(lkv)[None, :]
    pos = i if causal == "top_left" else i + lkv - lq
    if slopes is not None:
        logits = logits - np.asarray(slopes, np.float64)[:, None, None] * np.abs(pos - j)
    if visible is None:
        visible = np.ones(logits.shape, bool)
    visible = np.broadcast_to(visible, logits.shape) & (logits > -np.inf)
    if causal is not None:
        visible = visible & (j <= pos)
    if window[0] >= 0:
        visible = visible & (j >= pos - window[0])
    if window[1] >= 0:
        visible = visible & (j <= pos + window[1])
    m = np.where(visible, logits, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    e = np.where(visible, np.exp(np.where(visible, logits, 0) - m), 0)
    s = e.sum(axis=-1, keepdims=True)
    w = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(s[..., 0] > 0, m[..., 0] + np.log(s[..., 0]), -np.inf)
    if keep is not None:
        w = w * keep / (1 - p)
    return w @ v, w, lse


def causal_visible(lq, lkv, kind):
    i, j = np.arange(lq)[:, None], np.arange(lkv)[None, :]
    return j <= i if kind == "top_left" else j <= i + lkv - lq


def assert_close(test, got, want, tol=TOL):
    test.assertEqual(got.shape, want.shape)
    test.assertEqual(got.dtype, np.float32)
    scale = np.abs(want).max() + 1 if want.size else 1
    err = np.abs(got - want).max() / scale if want.size else 0
    test.assertLessEqual(err, tol, f"max error {err}")


def numgrad(f, x, eps=1e-6):
    """Central differences of the float64 scalar function f at x (float64)."""
    x = np.array(x, np.float64)
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for n in range(flat.size):
        old = flat[n]
        flat[n] = old + eps
        up = f(x)
        flat[n] = old - eps
        down = f(x)
        flat[n] = old
        gflat[n] = (up - down) / (2 * eps)
    return g


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


# Philox 4x32-10 (Salmon et al. 2011), as Random123's philox4x32_R(10, ...):
# each round multiplies words 0 and 2, xors in the other words and the key,
# and bumps the key by the Weyl constants.
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
U32 = np.uint64(0xFFFFFFFF)


def philox(c0, c1, c2, c3, seed):
    c = [np.asarray(x, np.uint64) & U32 for x in np.broadcast_arrays(c0, c1, c2, c3)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        p0, p1 = np.uint64(PHILOX_M[0]) * c[0], np.uint64(PHILOX_M[1]) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & U32, (p0 >> np.uint64(32)) ^ c[3] ^ k1,
             p0 & U32]
        k0, k1 = (k0 + np.uint64(PHILOX_W[0])) & U32, (k1 + np.uint64(PHILOX_W[1])) & U32
    return c


def philox_keep(p, seed, c1, c2, c3, n):
    """attn_training.h's keep decisions of elements 0 .. n-1 of the rows whose
    counters end in (c1, c2, c3) (broadcast arrays): word j mod 4 of counter
    (j / 4, c1, c2, c3) >= round(p · 2^32), p as a float32."""
    j = np.arange(n)
    words = philox(j // 4, c1[..., None], c2[..., None], c3[..., None], seed)
    word = np.choose(j % 4, words)
    threshold = round(float(np.float32(p)) * 2.0 ** 32)
    return word >= np.uint64(min(threshold, 0xFFFFFFFF))


def attention_keep(p, seed, b, h, lq, lkv):
    """The attention weights' keep mask [b, h, lq, lkv]: counters (j/4, i, b·h + h, 0)."""
    bh = np.arange(b * h).reshape(b, h, 1)
    i = np.arange(lq).reshape(1, 1, lq)
    return philox_keep(p, seed, np.broadcast_to(i, (b, h, lq)), np.broadcast_to(bh, (b, h, lq)),
                       np.zeros((b, h, lq), np.int64), lkv)


def element_keep(p, seed, rows, n, site):
    """The encoder layer's keep mask of a [rows, n] activation at site 1, 2 or 3:
    counters (c/4, r mod 2^32, r >> 32, site)."""
    r = np.arange(rows)
    return philox_keep(p, seed, r & 0xFFFFFFFF, r >> 32, np.full(rows, site), n)


def press_slopes(n):
    """ALiBi's default slopes, ofirpress/attention_with_linear_biases get_slopes."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + press_slopes(2 * closest)[0::2][:n - closest]


def rope_inv_freq(rotary_dim, base):
    return float(np.float32(base)) ** (-2 * np.arange(rotary_dim // 2) / rotary_dim)


def ref_rope(x, pos, inv_freq, rotary_dim, style="half", inverse=False):
    """RoFormer eq. 34 on the last axis of x [..., seq, head_dim] at positions
    pos [..., seq] (broadcast), float64."""
    x = np.array(x, np.float64)
    theta = np.asarray(pos, np.float64)[..., None] * inv_freq * (-1 if inverse else 1)
    half = rotary_dim // 2
    if style == "half":
        i1, i2 = np.arange(half), np.arange(half) + half
    else:
        i1, i2 = 2 * np.arange(half), 2 * np.arange(half) + 1
    x1, x2 = x[..., i1].copy(), x[..., i2].copy()
    x[..., i1] = x1 * np.cos(theta) - x2 * np.sin(theta)
    x[..., i2] = x2 * np.cos(theta) + x1 * np.sin(theta)
    return x


def mha_param_shapes(e, kvd, kdim, vdim, bias=True):
    """attn_training.h's flat order: Wq, Wk, Wv, (bq, bk, bv), Wo, (bo)."""
    shapes = [("wq", (e, e)), ("wk", (kvd, kdim)), ("wv", (kvd, vdim))]
    if bias:
        shapes += [("bq", (e,)), ("bk", (kvd,)), ("bv", (kvd,))]
    shapes += [("wo", (e, e))] + ([("bo", (e,))] if bias else [])
    return shapes


def unflatten(params, shapes):
    out, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = np.asarray(params[at:at + n], np.float64).reshape(shape)
        at += n
    assert at == len(params), (at, len(params))
    return out


def ref_mha(params, x, key, value, e, h, hkv, *, bias=True, rope=None, **attention):
    """nn.MultiheadAttention(batch_first=True) with GQA from the flat parameters,
    float64; rope = (inv_freq, rotary_dim, style) rotates the projected queries
    (at their aligned positions) and keys (at 0, 1, ...)."""
    x, key, value = f64(x, key, value)
    hd = e // h
    w = unflatten(params, mha_param_shapes(e, hd * hkv, key.shape[-1], value.shape[-1], bias))
    qp, kp, vp = x @ w["wq"].T, key @ w["wk"].T, value @ w["wv"].T
    if bias:
        qp, kp, vp = qp + w["bq"], kp + w["bk"], vp + w["bv"]
    b, lq, lkv = x.shape[0], x.shape[1], key.shape[1]
    split = lambda t, n, l: t.reshape(b, l, n, hd).transpose(0, 2, 1, 3)  # noqa: E731
    qh, kh, vh = split(qp, h, lq), split(kp, hkv, lkv), split(vp, hkv, lkv)
    if rope is not None:
        first = 0 if attention.get("causal") == "top_left" else lkv - lq
        qh = ref_rope(qh, np.arange(lq) + first, *rope)
        kh = ref_rope(kh, np.arange(lkv), *rope)
    a, weights, _ = ref_sdpa(qh, kh, vh, **attention)
    a = a.transpose(0, 2, 1, 3).reshape(b, lq, e)
    out = a @ w["wo"].T
    return (out + w["bo"] if bias else out), weights


def ref_layer_norm(x, weight, bias, eps=1e-5):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


ERF = np.vectorize(math.erf)


def encoder_param_shapes(d, ff):
    """nn.TransformerEncoderLayer's named_parameters() order."""
    return [("in_w", (3 * d, d)), ("in_b", (3 * d,)), ("out_w", (d, d)), ("out_b", (d,)),
            ("w1", (ff, d)), ("b1", (ff,)), ("w2", (d, ff)), ("b2", (d,)),
            ("n1w", (d,)), ("n1b", (d,)), ("n2w", (d,)), ("n2b", (d,))]


def encoder_keep(p, seed, b, nhead, length, d, ff):
    """The encoder layer's dropout masks (attn_encoder.h): the attention
    weights', site 1 after the activation [b, length, ff], sites 2 and 3 on
    the two blocks' outputs [b, length, d]."""
    rows = b * length
    return {"attention": attention_keep(p, seed, b, nhead, length, length),
            1: element_keep(p, seed, rows, ff, 1).reshape(b, length, ff),
            2: element_keep(p, seed, rows, d, 2).reshape(b, length, d),
            3: element_keep(p, seed, rows, d, 3).reshape(b, length, d)}


def ref_encoder(params, x, d, nhead, ff, activation="relu", norm_first=False, eps=1e-5,
                visible=None, causal=None, p=0.0, keep=None):
    """nn.TransformerEncoderLayer(batch_first=True) in float64, with dropout p
    and the masks keep of encoder_keep."""
    x = np.asarray(x, np.float64)
    w = unflatten(params, encoder_param_shapes(d, ff))
    attention = dict(visible=visible, causal=causal)
    if p:
        attention.update(keep=keep["attention"], p=p)

    def drop(t, site):
        return t * keep[site] / (1 - p) if p else t

    mha_params = np.concatenate([w["in_w"].ravel(), w["in_b"], w["out_w"].ravel(), w["out_b"]])
    sa = lambda y: ref_mha(mha_params, y, y, y, d, nhead, nhead, **attention)[0]  # noqa: E731
    act = (lambda t: np.maximum(t, 0)) if activation == "relu" else \
        (lambda t: t / 2 * (1 + ERF(t / np.sqrt(2))))

    def feed_forward(y):
        return drop(act(y @ w["w1"].T + w["b1"]), 1) @ w["w2"].T + w["b2"]

    if norm_first:
        h1 = x + drop(sa(ref_layer_norm(x, w["n1w"], w["n1b"], eps)), 2)
        return h1 + drop(feed_forward(ref_layer_norm(h1, w["n2w"], w["n2b"], eps)), 3)
    h1 = ref_layer_norm(x + drop(sa(x), 2), w["n1w"], w["n1b"], eps)
    return ref_layer_norm(h1 + drop(feed_forward(h1), 3), w["n2w"], w["n2b"], eps)


def ref_nadaraya_watson(x, keys, values, w):
    """D2L eq. 10.2.6 with a Gaussian kernel of width 1/w, float64."""
    x, keys, values = f64(x, keys, values)
    s = -((x[:, None] - keys[None, :]) * w) ** 2 / 2
    a = np.exp(s - s.max(axis=1, keepdims=True))
    a = a / a.sum(axis=1, keepdims=True)
    return a @ values, a


def ref_additive(w_q, w_k, w_v, queries, keys, values, visible=None):
    """D2L §10.3.2: scores w_vᵀ tanh(W_q q + W_k k), masked softmax, float64."""
    queries, keys, values, w_q, w_k, w_v = f64(queries, keys, values, w_q, w_k, w_v)
    scores = np.tanh((queries @ w_q.T)[:, :, None, :] + (keys @ w_k.T)[:, None, :, :]) @ w_v
    visible = np.ones(scores.shape, bool) if visible is None else \
        np.broadcast_to(visible, scores.shape)
    e = np.where(visible, np.exp(scores - scores.max(axis=-1, keepdims=True)), 0)
    s = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    return weights @ values, weights


class Sdpa(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(20240607)

    def randn(self, *shape):
        return self.rng.standard_normal(shape).astype(np.float32)

    def test_uva_seed_example(self):
        q = np.array([[0.3367, 0.1288], [0.2345, 0.2303], [-1.1229, -0.1863]], np.float32)
        k = np.array([[2.2082, -0.6380], [0.4617, 0.2674], [0.5349, 0.8094]], np.float32)
        v = np.array([[1.1103, -1.6898], [-0.9890, 0.9580], [1.3221, 0.8172]], np.float32)
        out, w = attn.sdpa(q[None], k[None], v[None], return_weights=True)
        np.testing.assert_allclose(out[0], [[0.5698, -0.1520], [0.5379, -0.0265],
                                            [0.2246, 0.5556]], atol=2e-4)
        np.testing.assert_allclose(w[0], [[0.4028, 0.2886, 0.3086], [0.3538, 0.3069, 0.3393],
                                          [0.1303, 0.4630, 0.4067]], atol=1e-4)

    def test_random_shapes_gqa_scale(self):
        for b, hq, hkv, lq, lkv, d, dv in [(1, 1, 1, 1, 1, 1, 1), (2, 4, 2, 5, 9, 8, 3),
                                           (3, 6, 1, 17, 4, 16, 16), (1, 8, 8, 70, 130, 32, 8)]:
            q, k, v = (self.randn(b, hq, lq, d), self.randn(b, hkv, lkv, d),
                       self.randn(b, hkv, lkv, dv))
            for scale in (None, 0.7):
                out, w, lse = attn.sdpa(q, k, v, scale=scale, return_weights=True, return_lse=True)
                rout, rw, rlse = ref_sdpa(q, k, v, scale=scale)
                assert_close(self, out, rout)
                assert_close(self, w, rw)
                assert_close(self, lse, rlse)

    def test_causal_alignments(self):
        # len_q < len_kv and len_q > len_kv: bottom-right leaves the first
        # len_q - len_kv queries without keys (zeros, lse -inf).
        for lq, lkv in [(3, 5), (5, 3), (4, 4)]:
            q, k, v = self.randn(2, 2, lq, 4), self.randn(2, 2, lkv, 4), self.randn(2, 2, lkv, 4)
            for kind in ("top_left", "bottom_right"):
                out, w, lse = attn.sdpa(q, k, v, causal=kind, return_weights=True,
                                        return_lse=True)
                rout, rw, rlse = ref_sdpa(q, k, v, visible=causal_visible(lq, lkv, kind))
                assert_close(self, out, rout)
                assert_close(self, w, rw)
                np.testing.assert_array_equal(w > 0, rw > 0)
                np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(rlse))
                self.assertFalse(np.isnan(out).any())

    def test_masks_broadcast_and_combine(self):
        b, h, lq, lkv, d = 2, 3, 4, 6, 5
        q, k, v = self.randn(b, h, lq, d), self.randn(b, h, lkv, d), self.randn(b, h, lkv, d)
        lengths = np.array([6, 3])
        per_query = self.rng.integers(0, lkv + 1, size=(b, lq))
        keep = self.rng.random((b, 1, lq, lkv)) > 0.3           # broadcast over heads
        bias = self.randn(lq, lkv)                               # broadcast over batch, heads
        j = np.arange(lkv)
        cases = [
            (dict(kv_lengths=lengths), j[None, None, None, :] < lengths[:, None, None, None], None),
            (dict(kv_lengths=per_query), j < per_query[:, None, :, None], None),
            (dict(keep=keep), keep, None),
            (dict(bias=bias), None, bias),
            (dict(kv_lengths=lengths, keep=keep, bias=bias, causal="bottom_right"),
             (j[None, None, None, :] < lengths[:, None, None, None]) & keep
             & causal_visible(lq, lkv, "bottom_right"), bias),
        ]
        for kwargs, visible, add in cases:
            out, w = attn.sdpa(q, k, v, return_weights=True, **kwargs)
            rout, rw, _ = ref_sdpa(q, k, v, visible=visible, bias=add)
            assert_close(self, out, rout)
            assert_close(self, w, rw)

    def test_bshd_layout_and_3d_inputs(self):
        b, h, lq, lkv, d = 2, 4, 3, 7, 6
        q, k, v = self.randn(b, lq, h, d), self.randn(b, lkv, h, d), self.randn(b, lkv, h, d)
        out = attn.sdpa(q, k, v, layout="bshd")
        rout, _, _ = ref_sdpa(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)))
        assert_close(self, out, rout.transpose(0, 2, 1, 3))
        # D2L's DotProductAttention: [B, L, d] with valid_lens [B].
        q3, k3, v3 = self.randn(2, 1, 2), self.randn(2, 10, 2), self.randn(2, 10, 4)
        out, w = attn.sdpa(q3, k3, v3, kv_lengths=[2, 6], return_weights=True)
        visible = np.arange(10)[None, None, None, :] < np.array([2, 6])[:, None, None, None]
        rout, rw, _ = ref_sdpa(q3[:, None], k3[:, None], v3[:, None], visible=visible)
        assert_close(self, out, rout[:, 0])
        assert_close(self, w, rw[:, 0])
        self.assertEqual(w.shape, (2, 1, 10))

    def test_threads_give_the_same_bits(self):
        q, k, v = self.randn(2, 4, 150, 16), self.randn(2, 4, 90, 16), self.randn(2, 4, 90, 16)
        with attn.Context(1) as one, attn.Context(2) as two:
            np.testing.assert_array_equal(attn.sdpa(q, k, v, ctx=one), attn.sdpa(q, k, v, ctx=two))


class Mha(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)

    def randn(self, *shape):
        return self.rng.standard_normal(shape).astype(np.float32)

    def reference(self, sd, x, key, value, e, h, hkv, visible=None):
        """nn.MultiheadAttention(batch_first=True) with GQA, in float64."""
        hd, kvd = e // h, e // h * hkv
        w, bias = sd["in_proj_weight"].astype(np.float64), sd["in_proj_bias"].astype(np.float64)
        qp = x @ w[:e].T + bias[:e]
        kp = key @ w[e:e + kvd].T + bias[e:e + kvd]
        vp = value @ w[e + kvd:].T + bias[e + kvd:]
        b, lq, lkv = x.shape[0], x.shape[1], key.shape[1]
        split = lambda t, n, l: t.reshape(b, l, n, hd).transpose(0, 2, 1, 3)  # noqa: E731
        a, weights, _ = ref_sdpa(split(qp, h, lq), split(kp, hkv, lkv), split(vp, hkv, lkv),
                                 visible=visible)
        a = a.transpose(0, 2, 1, 3).reshape(b, lq, e)
        return a @ sd["out_proj.weight"].T.astype(np.float64) + sd["out_proj.bias"], weights

    def state_dict(self, e, kvd):
        return {"in_proj_weight": self.randn(e + 2 * kvd, e) * 0.3,
                "in_proj_bias": self.randn(e + 2 * kvd) * 0.1,
                "out_proj.weight": self.randn(e, e) * 0.3, "out_proj.bias": self.randn(e) * 0.1}

    def test_self_attention_with_padding_and_causal(self):
        e, h, b, l = 16, 4, 3, 7
        sd = self.state_dict(e, e)
        layer = attn.MultiheadAttention(e, h)
        layer.load_state_dict(sd)
        x = self.randn(b, l, e)
        lengths = np.array([7, 2, 5])
        out, w = layer(x, kv_lengths=lengths, return_weights=True)
        visible = np.arange(l)[None, None, None, :] < lengths[:, None, None, None]
        rout, rw = self.reference(sd, x, x, x, e, h, h, visible)
        assert_close(self, out, rout, 1e-4)
        assert_close(self, w, rw)
        layer.set_causal("top_left")
        out = layer(x)
        rout, _ = self.reference(sd, x, x, x, e, h, h, causal_visible(l, l, "top_left"))
        assert_close(self, out, rout, 1e-4)
        self.assertEqual(layer(x[0]).shape, (l, e))   # unbatched

    def test_cross_attention_gqa_and_keep_mask(self):
        e, h, hkv, b, lq, lkv = 12, 6, 2, 2, 3, 5
        kvd = e // h * hkv
        sd = self.state_dict(e, kvd)
        layer = attn.MultiheadAttention(e, h, num_kv_heads=hkv)
        layer.load_state_dict(sd)
        x, mem = self.randn(b, lq, e), self.randn(b, lkv, e)
        keep = self.rng.random((lq, lkv)) > 0.4
        keep[:, 0] = True
        out, w = layer(x, mem, keep=keep, return_weights=True)
        rout, rw = self.reference(sd, x, mem, mem, e, h, hkv, keep)
        assert_close(self, out, rout, 1e-4)
        assert_close(self, w, rw)


# The new calls' outputs and gradients (against central differences of the
# float64 references, themselves accurate to ~1e-9) differ from float64 by at
# most 2e-7 of their scale with OpenBLAS; 1e-5 leaves room for other GEMM
# providers' orders of summation, while a wrong term (a bias, a mask, a
# dropout draw, a parameter out of place) costs more than 1e-3.
GTOL = 1e-5


class Case(unittest.TestCase):
    seed = 1

    def setUp(self):
        self.rng = np.random.default_rng(self.seed)

    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)


class SdpaTraining(Case):
    """Sdpa.backward against central differences of ref_sdpa, with masks,
    grouped-query heads, both layouts, the score modifiers and dropout."""
    seed = 11

    def run_case(self, shape, setup, mask, ref, layout="bhsd"):
        b, hq, hkv, lq, lkv, d, dv = shape
        op = attn.Sdpa(b, hq, hkv, lq, lkv, d, dv, layout=layout)
        setup(op)
        to_bhsd = (lambda t: t) if layout == "bhsd" else (lambda t: t.transpose(0, 2, 1, 3))
        q = self.randn(*op._shape(hq, lq, d))
        k, v = self.randn(*op._shape(hkv, lkv, d)), self.randn(*op._shape(hkv, lkv, dv))
        d_out = self.randn(*op._shape(hq, lq, dv))
        out, w, lse = op.forward(q, k, v, return_weights=True, return_lse=True, **mask)
        rout, rw, rlse = ref_sdpa(to_bhsd(q), to_bhsd(k), to_bhsd(v), **ref)
        assert_close(self, out, to_bhsd(rout))
        assert_close(self, w, rw)
        np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(rlse))
        assert_close(self, np.where(np.isinf(lse), 0, lse).astype(np.float32),
                     np.where(np.isinf(rlse), 0, rlse))
        d_q, d_k, d_v = op.backward(q, k, v, out, lse, d_out, **mask)

        def loss(qq, kk, vv):
            o = ref_sdpa(to_bhsd(qq), to_bhsd(kk), to_bhsd(vv), **ref)[0]
            return np.sum(to_bhsd(o) * d_out)
        q64, k64, v64 = f64(q, k, v)
        want = (numgrad(lambda x: loss(x, k64, v64), q64),
                numgrad(lambda x: loss(q64, x, v64), k64),
                numgrad(lambda x: loss(q64, k64, x), v64))
        for got, ref_grad in zip((d_q, d_k, d_v), want):
            assert_close(self, got, ref_grad, GTOL)
        # One gradient alone: the others are not computed.
        only_k = op.backward(q, k, v, out, lse, d_out, grads="k", **mask)
        self.assertIsNone(only_k[0])
        self.assertIsNone(only_k[2])
        assert_close(self, only_k[1], want[1], GTOL)
        op.close()

    def test_backward_against_central_differences(self):
        j4, j5 = np.arange(4), np.arange(5)
        lengths = np.array([5, 2])
        per_query = np.array([[0, 2, 4], [1, 0, 3]])
        keep = self.rng.random((2, 1, 3, 4)) > 0.3
        bias = self.randn(3, 4)
        slopes = np.float32([0.5, 0.25, 0.8])
        cases = [
            ("plain", (1, 2, 2, 3, 4, 4, 3), lambda op: None, {}, {}, "bhsd"),
            ("gqa_bottom_right_lengths", (2, 4, 2, 4, 5, 3, 2),
             lambda op: op.set_causal("bottom_right"), dict(kv_lengths=lengths),
             dict(causal="bottom_right", visible=j5 < lengths[:, None, None, None]), "bhsd"),
            ("per_query_lengths_empty_rows", (2, 2, 1, 3, 4, 4, 3), lambda op: None,
             dict(kv_lengths=per_query), dict(visible=j4 < per_query[:, None, :, None]),
             "bhsd"),
            ("bshd_keep_bias_scale", (2, 2, 1, 3, 4, 4, 4), lambda op: op.set_scale(0.6),
             dict(keep=keep, bias=bias), dict(visible=keep, bias=bias, scale=0.6), "bshd"),
            ("window_softcap_alibi", (1, 3, 3, 4, 6, 4, 3),
             lambda op: (op.set_window(2, 1), op.set_softcap(1.5), op.set_alibi(slopes)), {},
             dict(window=(2, 1), softcap=1.5, slopes=slopes), "bhsd"),
            ("top_left_window_default_alibi", (1, 6, 2, 5, 5, 2, 2),
             lambda op: (op.set_causal("top_left"), op.set_window(1, -1), op.set_alibi()), {},
             dict(causal="top_left", window=(1, -1), slopes=press_slopes(6)), "bhsd"),
            ("dropout", (2, 2, 2, 3, 5, 4, 4), lambda op: op.set_dropout(0.3, 11), {},
             dict(keep=attention_keep(0.3, 11, 2, 2, 3, 5), p=float(np.float32(0.3))), "bhsd"),
        ]
        for name, shape, setup, mask, ref, layout in cases:
            with self.subTest(name):
                self.run_case(shape, setup, mask, ref, layout)

    def test_dropout_keep_mask_is_philox(self):
        # The reference generator first: Random123's known answers for Philox4x32-10.
        known = [((0, 0, 0, 0), 0, (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
                 ((0xffffffff,) * 4, 2 ** 64 - 1, (0x408f276d, 0x41c83b0e, 0xa20bc7c6,
                                                   0x6d5451fd)),
                 ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), 0x299f31d0a4093822,
                  (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
        for counter, key, want in known:
            self.assertEqual([int(w) for w in philox(*counter, key)], list(want))
        b, h, lq, lkv = 2, 3, 5, 37
        with attn.Sdpa(b, h, h, lq, lkv, 4) as op:
            self.assertTrue(op.dropout_keep_mask().all())   # p = 0: nothing dropped
            for p, seed in ((0.25, 7), (0.5, 2 ** 40 + 3), (0.9, 0)):
                op.set_dropout(p, seed)
                keep = op.dropout_keep_mask()
                self.assertEqual(keep.dtype, np.bool_)
                np.testing.assert_array_equal(keep, attention_keep(p, seed, b, h, lq, lkv))
            q, k, v = self.randn(b, h, lq, 4), self.randn(b, h, lkv, 4), self.randn(b, h, lkv, 4)
            out, w = op.forward(q, k, v, return_weights=True)
            rout, rw, _ = ref_sdpa(q, k, v, keep=attention_keep(0.9, 0, b, h, lq, lkv),
                                   p=float(np.float32(0.9)))
            assert_close(self, out, rout)
            assert_close(self, w, rw)
            op.set_dropout(0.0)
            assert_close(self, op.forward(q, k, v), ref_sdpa(q, k, v)[0])

    def test_modifiers_forward_and_clear(self):
        b, h, lq, lkv, d = 2, 4, 6, 9, 8
        q, k, v = self.randn(b, h, lq, d), self.randn(b, h, lkv, d), self.randn(b, h, lkv, d)
        with attn.Sdpa(b, h, h, lq, lkv, d) as op:
            op.set_alibi()
            op.set_softcap(0.7)
            op.set_window(3, 0)
            out, w = op.forward(q, k, v, return_weights=True)
            rout, rw, _ = ref_sdpa(q, k, v, slopes=press_slopes(h), softcap=0.7, window=(3, 0))
            assert_close(self, out, rout)
            assert_close(self, w, rw)
            np.testing.assert_array_equal(w > 0, rw > 0)
            op.clear_alibi()
            op.set_softcap(0)
            op.set_window(-1, -1)
            assert_close(self, op.forward(q, k, v), ref_sdpa(q, k, v)[0])


class MhaTraining(Case):
    """The layer's flat parameters, forward_train and backward against
    central differences of ref_mha, with dropout, RoPE and modifiers."""
    seed = 5

    def state_dict(self, e, kvd):
        return {"in_proj_weight": self.randn(e + 2 * kvd, e, scale=0.3),
                "in_proj_bias": self.randn(e + 2 * kvd, scale=0.1),
                "out_proj.weight": self.randn(e, e, scale=0.3),
                "out_proj.bias": self.randn(e, scale=0.1)}

    def test_flat_parameters_follow_named_parameters(self):
        e, h = 8, 2
        sd = self.state_dict(e, e)
        with attn.MultiheadAttention(e, h) as layer:
            layer.load_state_dict(sd)
            self.assertEqual(layer.param_count, 4 * e * e + 4 * e)
            np.testing.assert_array_equal(layer.get_params(), np.concatenate([
                sd["in_proj_weight"].ravel(), sd["in_proj_bias"], sd["out_proj.weight"].ravel(),
                sd["out_proj.bias"]]))
        # Grouped-query heads and kdim, vdim != embed_dim: Wq, Wk, Wv, bq, bk, bv, Wo, bo.
        e, h, hkv, kdim, vdim = 8, 4, 2, 5, 3
        kvd = e // h * hkv
        wq, wk, wv, wo = (self.randn(e, e), self.randn(kvd, kdim), self.randn(kvd, vdim),
                          self.randn(e, e))
        bq, bk, bv, bo = self.randn(e), self.randn(kvd), self.randn(kvd), self.randn(e)
        for bias in (True, False):
            with attn.MultiheadAttention(e, h, hkv, kdim, vdim, bias=bias) as layer:
                for which, w, bb in (("q", wq, bq), ("k", wk, bk), ("v", wv, bv), ("o", wo, bo)):
                    layer.set_weights(which, w, bb if bias else None)
                parts = [wq, wk, wv] + ([bq, bk, bv] if bias else []) + [wo] + \
                    ([bo] if bias else [])
                want = np.concatenate([x.ravel() for x in parts])
                self.assertEqual(layer.param_count, want.size)
                np.testing.assert_array_equal(layer.get_params(), want)
                params = self.randn(layer.param_count, scale=0.3)
                layer.set_params(params)
                np.testing.assert_array_equal(layer.get_params(), params)
                x, mem, val = self.randn(2, 3, e), self.randn(2, 4, kdim), self.randn(2, 4, vdim)
                assert_close(self, layer(x, mem, val),
                             ref_mha(params, x, mem, val, e, h, hkv, bias=bias)[0], GTOL)
                props = {n: layer.get_property(n) for n in ("embed_dim", "num_heads",
                                                            "num_kv_heads", "head_dim", "kdim",
                                                            "vdim", "bias", "causal")}
                self.assertEqual(props, dict(embed_dim=e, num_heads=h, num_kv_heads=hkv,
                                             head_dim=e // h, kdim=kdim, vdim=vdim,
                                             bias=int(bias), causal=0))

    def check_gradients(self, layer, params, inputs, loss, grads):
        """grads: (d_query, d_key, d_value, d_params) from the layer; loss(params,
        *inputs) the float64 reference's loss."""
        p64, in64 = np.asarray(params, np.float64), f64(*inputs)
        want_params = numgrad(lambda p: loss(p, *in64), p64)
        assert_close(self, grads[3], want_params, GTOL)
        for n, got in enumerate(grads[:3]):
            if got is None:
                continue
            def f(x, n=n):
                args = list(in64)
                args[n] = x
                return loss(p64, *args)
            assert_close(self, got, numgrad(f, in64[n]), GTOL)

    def test_cross_attention_gradients_gqa_kdim_lengths(self):
        e, h, hkv, kdim, vdim, b, lq, lkv = 8, 4, 2, 6, 5, 2, 3, 4
        with attn.MultiheadAttention(e, h, hkv, kdim, vdim) as layer, attn.Activations() as act:
            params = self.randn(layer.param_count, scale=0.3)
            layer.set_params(params)
            x, mem, val = self.randn(b, lq, e), self.randn(b, lkv, kdim), self.randn(b, lkv, vdim)
            lengths = np.array([4, 2])
            d_out = self.randn(b, lq, e)
            out, w = layer.forward_train(act, x, mem, val, kv_lengths=lengths,
                                         return_weights=True)
            gc.collect()   # the mask made from kv_lengths lives on in act
            visible = np.arange(lkv) < lengths[:, None, None, None]
            rout, rw = ref_mha(params, x, mem, val, e, h, hkv, visible=visible)
            assert_close(self, out, rout, GTOL)
            assert_close(self, w, rw)

            def loss(p, xx, kk, vv):
                return np.sum(ref_mha(p, xx, kk, vv, e, h, hkv, visible=visible)[0] * d_out)
            grads = layer.backward(act, d_out)
            self.assertEqual([g.shape for g in grads],
                             [(b, lq, e), (b, lkv, kdim), (b, lkv, vdim), (layer.param_count,)])
            self.check_gradients(layer, params, (x, mem, val), loss, grads)
            # act is only read: a second backward, d_params alone.
            again = layer.backward(act, d_out, inputs=False)
            self.assertEqual(again[:3], (None, None, None))
            assert_close(self, again[3], numgrad(lambda p: loss(p, *f64(x, mem, val)),
                                                 np.float64(params)), GTOL)

    def test_self_attention_with_dropout_rope_and_causal(self):
        e, h, b, l = 8, 2, 2, 5
        p, seed = 0.25, 3
        rope = attn.Rope(4, style="interleaved", base=100.0)
        with attn.MultiheadAttention(e, h) as layer, attn.Activations() as act:
            params = self.randn(layer.param_count, scale=0.3)
            layer.set_params(params)
            layer.set_causal("top_left")
            layer.set_dropout(p, seed)
            layer.set_rope(rope)
            rope.close()   # the layer has its own copy
            self.assertEqual((layer.get_property("has_rope"), layer.get_property("has_dropout"),
                              layer.get_property("causal")), (1, 1, 1))
            x, d_out = self.randn(b, l, e), self.randn(b, l, e)
            options = dict(rope=(rope_inv_freq(4, 100.0), 4, "interleaved"), causal="top_left",
                           keep=attention_keep(p, seed, b, h, l, l), p=float(np.float32(p)))
            out = layer.forward_train(act, x)
            assert_close(self, out, ref_mha(params, x, x, x, e, h, h, **options)[0], GTOL)
            # Inference never drops.
            no_drop = dict(options, keep=None, p=0.0)
            assert_close(self, layer(x), ref_mha(params, x, x, x, e, h, h, **no_drop)[0], GTOL)
            grads = layer.backward(act, d_out)
            self.assertIsNone(grads[1])   # key and value were the query: d_query is the sum
            self.assertIsNone(grads[2])

            def loss(pp, xx):
                return np.sum(ref_mha(pp, xx, xx, xx, e, h, h, **options)[0] * d_out)
            self.check_gradients(layer, params, (x,), loss, grads)
            # Unbatched: one sequence [L, E] in, [L, E] out.
            out1 = layer.forward_train(act, x[1])
            self.assertEqual(out1.shape, (l, e))
            d_query = layer.backward(act, d_out[0], params=False)[0]
            keep1 = attention_keep(p, seed, 1, h, l, l)

            def loss1(xx):
                o = ref_mha(params, xx[None], xx[None], xx[None], e, h, h,
                            **dict(options, keep=keep1))[0]
                return np.sum(o[0] * d_out[0])
            assert_close(self, d_query, numgrad(loss1, np.float64(x[1])), GTOL)

    def test_modifiers(self):
        e, h, b, lq, lkv = 8, 4, 2, 3, 6
        slopes = np.float32([0.1, 0.2, 0.4, 0.8])
        with attn.MultiheadAttention(e, h) as layer:
            params = self.randn(layer.param_count, scale=0.3)
            layer.set_params(params)
            x, mem = self.randn(b, lq, e), self.randn(b, lkv, e)
            self.assertEqual(layer.get_property("has_modifiers"), 0)
            layer.set_window(2, 0)
            layer.set_softcap(0.5)
            layer.set_alibi(slopes)
            self.assertEqual(layer.get_property("has_modifiers"), 1)
            assert_close(self, layer(x, mem), ref_mha(params, x, mem, mem, e, h, h,
                                                      window=(2, 0), softcap=0.5,
                                                      slopes=slopes)[0], GTOL)
            layer.set_alibi()
            assert_close(self, layer(x, mem), ref_mha(params, x, mem, mem, e, h, h,
                                                      window=(2, 0), softcap=0.5,
                                                      slopes=press_slopes(h))[0], GTOL)
            layer.clear_alibi()
            layer.set_window(-1, -1)
            layer.set_softcap(0)
            self.assertEqual(layer.get_property("has_modifiers"), 0)
            assert_close(self, layer(x, mem), ref_mha(params, x, mem, mem, e, h, h)[0], GTOL)

    def test_backward_needs_this_layers_training_forward(self):
        e, h = 4, 2
        with attn.MultiheadAttention(e, h) as layer, attn.MultiheadAttention(e, h) as other, \
                attn.Activations() as act:
            layer.set_params(self.randn(layer.param_count))
            other.set_params(self.randn(other.param_count))
            x = self.randn(1, 3, e)
            with self.assertRaises(attn.AttnError) as cm:   # nothing filled yet
                layer.backward(act, x)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
            self.assertIn("attn_mha_backward", cm.exception.message)
            other.forward_train(act, x)
            with self.assertRaises(attn.AttnError) as cm:   # another layer's
                layer.backward(act, x)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
            layer.forward_train(act, x)
            layer.set_params(layer.get_params())   # parameters set since: libattn says so
            with self.assertRaises(attn.AttnError) as cm:
                layer.backward(act, x)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
            self.assertTrue(cm.exception.message.startswith("attn_mha_backward: "))
            mask = attn.Mask(kv_lengths=[2])
            layer.forward_train(act, x, mask=mask)
            mask.close()
            with self.assertRaises(attn.AttnError) as cm:   # its mask is gone
                layer.backward(act, x)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)


class AdditiveAndKernelRegression(Case):
    seed = 3

    def test_additive_forward_params_and_backward(self):
        qd, kd, hidden, b, lq, lkv = 3, 4, 5, 2, 3, 4
        w_q, w_k, w_v = self.randn(hidden, qd), self.randn(hidden, kd), self.randn(hidden)
        with attn.AdditiveAttention(qd, kd, hidden) as op, attn.Activations() as act:
            op.set_weights(w_q, w_k, w_v)
            self.assertEqual(op.param_count, hidden * (qd + kd + 1))
            np.testing.assert_array_equal(op.get_params(),
                                          np.concatenate([w_q.ravel(), w_k.ravel(), w_v]))
            q, k, v = self.randn(b, lq, qd), self.randn(b, lkv, kd), self.randn(b, lkv, 2)
            lengths = np.array([2, 4])
            visible = np.arange(lkv) < lengths[:, None, None]
            out, w = op(q, k, v, kv_lengths=lengths, return_weights=True)
            rout, rw = ref_additive(w_q, w_k, w_v, q, k, v, visible)
            assert_close(self, out, rout)
            assert_close(self, w, rw)
            params = self.randn(op.param_count)
            op.set_params(params)
            shapes = [("w_q", (hidden, qd)), ("w_k", (hidden, kd)), ("w_v", (hidden,))]

            def loss(pp, qq, kk, vv, d_out):
                u = unflatten(pp, shapes)
                return np.sum(ref_additive(u["w_q"], u["w_k"], u["w_v"], qq, kk, vv,
                                           visible)[0] * d_out)
            # Keys are the values (D2L): d_keys is the sum, d_values None.
            kv = self.randn(b, lkv, kd)
            d_out = self.randn(b, lq, kd)
            out = op.forward_train(act, q, kv, kv_lengths=lengths)
            u = unflatten(params, shapes)
            assert_close(self, out, ref_additive(u["w_q"], u["w_k"], u["w_v"], q, kv, kv,
                                                 visible)[0])
            d_q, d_k, d_v, d_p = op.backward(act, d_out)
            self.assertIsNone(d_v)
            p64, q64, kv64, do64 = f64(params, q, kv, d_out)
            assert_close(self, d_p, numgrad(lambda p: loss(p, q64, kv64, kv64, do64), p64), GTOL)
            assert_close(self, d_q, numgrad(lambda x: loss(p64, x, kv64, kv64, do64), q64), GTOL)
            assert_close(self, d_k, numgrad(lambda x: loss(p64, q64, x, x, do64), kv64), GTOL)
            # Separate values.
            d_out = self.randn(b, lq, 2)
            op.forward_train(act, q, k, v, kv_lengths=lengths)
            d_v = op.backward(act, d_out, params=False)[2]
            k64, v64 = f64(k, v)
            assert_close(self, d_v, numgrad(lambda x: loss(p64, q64, k64, x, np.float64(d_out)),
                                            v64), GTOL)

    def test_nadaraya_watson_and_backward(self):
        x, keys, values = self.randn(7), self.randn(9) * 2, self.randn(9)
        w, d_out = 1.7, self.randn(7)
        out, weights = attn.nadaraya_watson(x, keys, values, w, return_weights=True)
        rout, rw = ref_nadaraya_watson(x, keys, values, w)
        assert_close(self, out, rout)
        assert_close(self, weights, rw)
        d_x, d_k, d_v, d_w = attn.nadaraya_watson_backward(x, keys, values, d_out, w)

        def loss(xx, kk, vv, ww):
            return np.sum(ref_nadaraya_watson(xx, kk, vv, ww)[0] * d_out)
        x64, k64, v64 = f64(x, keys, values)
        assert_close(self, d_x, numgrad(lambda t: loss(t, k64, v64, w), x64), GTOL)
        assert_close(self, d_k, numgrad(lambda t: loss(x64, t, v64, w), k64), GTOL)
        assert_close(self, d_v, numgrad(lambda t: loss(x64, k64, t, w), v64), GTOL)
        want_w = numgrad(lambda t: loss(x64, k64, v64, t[0]), np.array([w]))[0]
        self.assertIsInstance(d_w, float)
        self.assertLessEqual(abs(d_w - want_w) / (abs(want_w) + 1), GTOL)

    def test_positional_encoding(self):
        for length, dim, start, base in ((5, 6, 0, 10000.0), (3, 4, 1000, 100.0)):
            got = attn.positional_encoding(length, dim, start, base)
            pos = np.arange(start, start + length)[:, None]
            angle = pos / float(np.float32(base)) ** (np.arange(0, dim, 2) / dim)
            want = np.empty((length, dim))
            want[:, 0::2], want[:, 1::2] = np.sin(angle), np.cos(angle)
            assert_close(self, got, want, 1e-6)


class EncoderAndLayerNorm(Case):
    seed = 8

    def encoder_params(self, d, ff):
        parts = []
        for name, shape in encoder_param_shapes(d, ff):
            if name in ("n1w", "n2w"):
                parts.append(1 + self.randn(*shape, scale=0.1))
            else:
                parts.append(self.randn(*shape, scale=0.3))
        return np.concatenate([x.ravel() for x in parts])

    def test_layer_norm_and_backward(self):
        x = self.randn(2, 3, 7) + 1000   # far from 0: the mean carries the digits
        weight, bias, d_y = 1 + self.randn(7, scale=0.1), self.randn(7), self.randn(2, 3, 7)
        assert_close(self, attn.layer_norm(x, weight, bias, 1e-3),
                     ref_layer_norm(x, weight, bias, 1e-3), 1e-5)
        d_x, d_w, d_b = attn.layer_norm_backward(x, weight, d_y, 1e-3)
        x64, w64, b64 = f64(x, weight, bias)

        def loss(xx, ww, bb):
            return np.sum(ref_layer_norm(xx, ww, bb, 1e-3) * d_y)
        assert_close(self, d_x, numgrad(lambda t: loss(t, w64, b64), x64), GTOL)
        assert_close(self, d_w, numgrad(lambda t: loss(x64, t, b64), w64), GTOL)
        assert_close(self, d_b, numgrad(lambda t: loss(x64, w64, t), b64), GTOL)

    def test_forward_both_norms_and_masks(self):
        d, nhead, ff, b, l = 8, 2, 12, 2, 4
        lengths = np.array([4, 2])
        keep = self.rng.random((l, l)) > 0.3
        keep[:, 0] = True
        for activation, norm_first, mask, visible, causal in (
                ("relu", False, dict(kv_lengths=lengths),
                 np.arange(l) < lengths[:, None, None, None], None),
                ("gelu", True, dict(keep=keep), keep, "top_left")):
            with self.subTest(activation=activation, norm_first=norm_first), \
                    attn.EncoderLayer(d, nhead, ff, activation, norm_first, 1e-5) as layer:
                params = self.encoder_params(d, ff)
                self.assertEqual(layer.param_count, params.size)
                layer.set_params(params)
                np.testing.assert_array_equal(layer.get_params(), params)
                if causal:
                    layer.set_causal(causal)
                x = self.randn(b, l, d)
                assert_close(self, layer(x, **mask),
                             ref_encoder(params, x, d, nhead, ff, activation, norm_first,
                                         visible=visible, causal=causal), GTOL)

    def test_backward_with_dropout_against_central_differences(self):
        d, nhead, ff, b, l, p, seed = 8, 2, 12, 2, 4, 0.2, 9
        lengths = np.array([3, 4])
        visible = np.arange(l) < lengths[:, None, None, None]
        for activation, norm_first in (("relu", False), ("gelu", True)):
            with self.subTest(activation=activation, norm_first=norm_first), \
                    attn.EncoderLayer(d, nhead, ff, activation, norm_first) as layer, \
                    attn.Activations() as act:
                params = self.encoder_params(d, ff)
                layer.set_params(params)
                layer.set_dropout(p, seed)
                x, d_out = self.randn(b, l, d), self.randn(b, l, d)
                options = dict(activation=activation, norm_first=norm_first, visible=visible,
                               p=float(np.float32(p)),
                               keep=encoder_keep(p, seed, b, nhead, l, d, ff))
                out = layer.forward_train(act, x, kv_lengths=lengths)
                assert_close(self, out, ref_encoder(params, x, d, nhead, ff, **options), GTOL)
                assert_close(self, layer(x, kv_lengths=lengths),   # inference: no dropout
                             ref_encoder(params, x, d, nhead, ff,
                                         **dict(options, p=0.0)), GTOL)
                d_src, d_params = layer.backward(act, d_out)
                p64, x64 = f64(params, x)

                def loss(pp, xx):
                    return np.sum(ref_encoder(pp, xx, d, nhead, ff, **options) * d_out)
                assert_close(self, d_params, numgrad(lambda t: loss(t, x64), p64), GTOL)
                assert_close(self, d_src, numgrad(lambda t: loss(p64, t), x64), GTOL)

    def test_forward_cached_decodes_like_the_causal_forward(self):
        d, nhead, ff = 8, 2, 12
        with attn.EncoderLayer(d, nhead, ff, "gelu", True) as layer, \
                attn.KVCache(nhead, d // nhead, d // nhead, 2, 16) as cache:
            params = self.encoder_params(d, ff)
            layer.set_params(params)
            layer.set_causal("top_left")
            xa, xb = self.randn(1, 5, d), self.randn(1, 4, d)
            a, bseq = cache.seq_open(), cache.seq_open()
            outs = {a: [], bseq: []}
            # Chunks: (a 3, b 2), (b 1, a 1), (a 1, b 1): every sequence in any order.
            steps = [((a, 0, 3), (bseq, 0, 2)), ((bseq, 2, 3), (a, 3, 4)),
                     ((a, 4, 5), (bseq, 3, 4))]
            for step in steps:
                rows = [(xa if s == a else xb)[0, lo:hi] for s, lo, hi in step]
                cu_q = np.cumsum([0] + [len(r) for r in rows])
                out = layer.forward_cached(cache, [s for s, _, _ in step], cu_q,
                                           np.concatenate(rows))
                for (s, _, _), lo, hi in zip(step, cu_q[:-1], cu_q[1:]):
                    outs[s].append(out[lo:hi])
            for s, x in ((a, xa), (bseq, xb)):
                want = ref_encoder(params, x, d, nhead, ff, "gelu", True, causal="top_left")
                assert_close(self, np.concatenate(outs[s])[None], want, GTOL)
            self.assertEqual((cache.seq_len(a), cache.seq_len(bseq)), (5, 4))


class RopeTests(Case):
    seed = 4

    def test_apply_against_the_formula(self):
        for style in ("half", "interleaved"):
            for head_dim, rotary_dim in ((8, 8), (10, 6)):
                for layout in ("bhsd", "bshd"):
                    with self.subTest(style=style, rotary_dim=rotary_dim, layout=layout), \
                            attn.Rope(head_dim, rotary_dim, 500.0, style) as rope:
                        b, h, s = 2, 3, 5
                        x = self.randn(b, h, s, head_dim)
                        xin = x if layout == "bhsd" else x.transpose(0, 2, 1, 3)
                        back = (lambda t: t) if layout == "bhsd" else \
                            (lambda t: t.transpose(0, 2, 1, 3))
                        inv = rope_inv_freq(rotary_dim, 500.0)
                        pos = self.rng.integers(-50, 1000, size=(b, s))
                        got = back(rope.apply(xin, pos, layout=layout))
                        want = ref_rope(x, pos[:, None, :], inv, rotary_dim, style)
                        assert_close(self, got, want, 1e-5)
                        got = back(rope.apply(xin, start=7, layout=layout, inverse=True))
                        want = ref_rope(x, np.arange(7, 7 + s), inv, rotary_dim, style, True)
                        assert_close(self, got, want, 1e-5)
                        self.assertFalse(np.shares_memory(got, x))

    def test_frequency_sources(self):
        head_dim, b, h, s = 16, 1, 2, 6
        x = self.randn(b, h, s, head_dim)
        pos = np.arange(s) * 7
        base_freq = rope_inv_freq(head_dim, 10000.0)
        # Llama 3.1's scaling in the words of attn_rope.h, with L = 64 so that the
        # three regimes (kept, blended, divided) all occur.
        factor, low, high, big_l = 8.0, 1.0, 4.0, 64
        wavelength = 2 * np.pi / base_freq
        blend = (big_l / wavelength - low) / (high - low)
        llama3 = np.where(wavelength > big_l / low, base_freq / factor,
                          np.where(wavelength < big_l / high, base_freq,
                                   (1 - blend) * base_freq / factor + blend * base_freq))
        self.assertTrue((wavelength < big_l / high).any() and (wavelength > big_l / low).any()
                        and ((wavelength >= big_l / high) & (wavelength <= big_l / low)).any())
        custom = np.float32(self.rng.random(head_dim // 2))
        cos_t, sin_t = self.randn(10, head_dim // 2), self.randn(10, head_dim // 2)
        with attn.Rope(head_dim) as rope:
            rope.set_linear_scaling(4.0)
            assert_close(self, rope.apply(x, pos[None]), ref_rope(x, pos, base_freq / 4,
                                                                  head_dim), 1e-5)
            rope.set_llama3_scaling(factor, low, high, big_l)
            assert_close(self, rope.apply(x, pos[None]), ref_rope(x, pos, llama3, head_dim),
                         1e-5)
            rope.set_inv_freq(custom)
            assert_close(self, rope.apply(x, pos[None]),
                         ref_rope(x, pos, np.float64(custom), head_dim), 1e-5)
            rope.set_tables(cos_t, sin_t)
            tpos = np.array([[0, 3, 9, 1, 1, 5]])
            half = head_dim // 2
            want = np.float64(x).copy()
            c, sn = np.float64(cos_t[tpos[0]]), np.float64(sin_t[tpos[0]])
            want[..., :half] = x[..., :half] * c - x[..., half:] * sn
            want[..., half:] = x[..., half:] * c + x[..., :half] * sn
            assert_close(self, rope.apply(x, tpos), want, 1e-5)
            with self.assertRaises(attn.AttnError) as cm:   # a position outside the tables
                rope.apply(x, tpos + 5)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_INVALID_ARGUMENT)


class Decoding(Case):
    seed = 6

    def test_cache_append_read_fork_truncate(self):
        hkv, dqk, dv, page = 2, 3, 4, 2
        with attn.KVCache(hkv, dqk, dv, page, 5) as cache:
            a = cache.seq_open()
            k, v = self.randn(3, hkv, dqk), self.randn(3, hkv, dv)
            cache.append(a, k, v)
            self.assertEqual(cache.seq_len(a), 3)
            rk, rv = cache.read(a)
            np.testing.assert_array_equal(rk, k)
            np.testing.assert_array_equal(rv, v)
            b = cache.seq_fork(a)
            self.assertNotEqual(a, b)
            k2, v2 = self.randn(2, hkv, dqk), self.randn(2, hkv, dv)
            cache.append(b, k2, v2)   # copies the shared, partly filled page
            np.testing.assert_array_equal(cache.read(a)[0], k)
            np.testing.assert_array_equal(cache.read(b)[0], np.concatenate([k, k2]))
            np.testing.assert_array_equal(cache.read(b, 2, 2)[1], np.concatenate([v, v2])[2:4])
            self.assertIsNone(cache.read(b, keys=False)[0])
            cache.seq_truncate(b, 1)
            self.assertEqual(cache.seq_len(b), 1)
            np.testing.assert_array_equal(cache.read(b)[1], v[:1])
            # 5 pages of 2: a holds 2 (3 tokens), b shares a's first and gave its own
            # back: 3 pages are free, 7 slots with a's last one. 8 tokens do not fit.
            with self.assertRaises(attn.AttnError) as cm:
                cache.append(a, self.randn(8, hkv, dqk), self.randn(8, hkv, dv))
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
            self.assertEqual(cache.seq_len(a), 3)   # nothing appended
            cache.seq_close(b)
            with self.assertRaises(attn.AttnError) as cm:
                cache.seq_len(b)
            self.assertEqual(cm.exception.status, attn.ATTN_ERR_INVALID_ARGUMENT)
            k3, v3 = self.randn(7, hkv, dqk), self.randn(7, hkv, dv)
            cache.append(a, k3, v3)
            self.assertEqual(cache.seq_len(a), 10)
            np.testing.assert_array_equal(cache.read(a, 3)[1], v3)

    def test_sdpa_forward_cached_against_the_causal_forward(self):
        hq, hkv, dqk, dv = 4, 2, 5, 3
        lengths, new = (6, 3), (2, 1)   # tokens after the append, of which new
        ks = [self.randn(n, hkv, dqk) for n in lengths]
        vs = [self.randn(n, hkv, dv) for n in lengths]
        qs = [self.randn(n, hq, dqk) for n in new]
        with attn.KVCache(hkv, dqk, dv, 4, 8) as cache, \
                attn.Sdpa(0, hq, hkv, 0, 0, dqk, dv) as op:
            op.set_window(2, 0)
            op.set_alibi()
            seqs = [cache.seq_open() for _ in lengths]
            for s, k, v in zip(seqs, ks, vs):
                cache.append(s, k, v)
            out, lse = op.forward_cached(cache, seqs, [0, 2, 3], np.concatenate(qs),
                                         return_lse=True)
            want = []
            for n, (k, v, q) in enumerate(zip(ks, vs, qs)):
                rows = slice(sum(new[:n]), sum(new[:n + 1]))
                tr = lambda t: t.transpose(1, 0, 2)[None]  # noqa: E731  [L, H, D] -> [1, H, L, D]
                rout, _, rlse = ref_sdpa(tr(q), tr(k), tr(v), causal="bottom_right",
                                         window=(2, 0), slopes=press_slopes(hq))
                want.append(rout[0].transpose(1, 0, 2))
                assert_close(self, out[rows], want[-1])
                assert_close(self, lse[rows], rlse[0].T)
            # One sequence: cu_q may be left out.
            assert_close(self, op.forward_cached(cache, seqs[1], None, qs[1]), want[1])

    def test_mha_forward_cached_with_rope_and_gqa(self):
        e, h, hkv = 12, 4, 2
        hd = e // h
        with attn.MultiheadAttention(e, h, hkv) as layer, \
                attn.KVCache(hkv, hd, hd, 2, 12) as cache, \
                attn.Rope(hd, 2, 1000.0) as rope:
            params = self.randn(layer.param_count, scale=0.3)
            layer.set_params(params)
            layer.set_rope(rope)   # partial rotary: 2 of 3 features
            xa, xb = self.randn(1, 5, e), self.randn(1, 4, e)
            a, b = cache.seq_open(), cache.seq_open()
            got = {a: [], b: []}
            for step in (((a, 0, 3), (b, 0, 2)), ((b, 2, 3), (a, 3, 4)), ((a, 4, 5), (b, 3, 4))):
                rows = [(xa if s == a else xb)[0, lo:hi] for s, lo, hi in step]
                cu_q = np.cumsum([0] + [len(r) for r in rows])
                out = layer.forward_cached(cache, [s for s, _, _ in step], cu_q,
                                           np.concatenate(rows))
                for (s, _, _), lo, hi in zip(step, cu_q[:-1], cu_q[1:]):
                    got[s].append(out[lo:hi])
            for s, x in ((a, xa), (b, xb)):
                want = ref_mha(params, x, x, x, e, h, hkv, causal="top_left",
                               rope=(rope_inv_freq(2, 1000.0), 2, "half"))[0]
                assert_close(self, np.concatenate(got[s])[None], want, GTOL)

    def test_merge_partials(self):
        b, h, lq, lkv, d = 2, 3, 4, 9, 5
        q, k, v = self.randn(b, h, lq, d), self.randn(b, h, lkv, d), self.randn(b, h, lkv, d)
        want_out, _, want_lse = ref_sdpa(q, k, v)
        parts = [(0, 4), (4, 9)]
        outs, lses = [], []
        for lo, hi in parts:
            o, _, s = ref_sdpa(q, k[:, :, lo:hi], v[:, :, lo:hi])
            outs.append(o.astype(np.float32))
            lses.append(s.astype(np.float32))
        # An empty part: lse -inf, whatever its out holds.
        outs.append(np.full((b, h, lq, d), np.nan, np.float32))
        lses.append(np.full((b, h, lq), -np.inf, np.float32))
        out, lse = attn.merge_partials(outs, lses)
        assert_close(self, out, want_out)
        assert_close(self, lse, want_lse)
        out, lse = attn.merge_partials(outs[2:], lses[2:])   # every part empty
        np.testing.assert_array_equal(out, 0)
        self.assertTrue(np.isneginf(lse).all())


class Lifetimes(Case):
    def test_close_with_and_use_after_close(self):
        makers = [attn.Context, attn.Mask, attn.Activations, lambda: attn.Sdpa(1, 1, 1, 1, 1, 2),
                  lambda: attn.MultiheadAttention(4, 2), lambda: attn.AdditiveAttention(2, 2, 2),
                  lambda: attn.EncoderLayer(4, 2, 8), lambda: attn.Rope(4),
                  lambda: attn.KVCache(1, 2, 2, 2, 2)]
        for make in makers:
            obj = make()
            with obj as same:
                self.assertIs(same, obj)
                self.assertTrue(obj._handle)
            self.assertIsNone(obj._handle)
            obj.close()   # idempotent
            del obj
        layer = attn.MultiheadAttention(4, 2)
        layer.close()
        with self.assertRaises(attn.AttnError) as cm:   # libattn sees NULL
            layer.set_causal("top_left")
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_NULL_POINTER)
        cache = attn.KVCache(1, 2, 2, 2, 2)
        cache.close()
        with self.assertRaises(attn.AttnError) as cm:
            cache.seq_open()
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_NULL_POINTER)

    def test_mask_holds_copies(self):
        q, k, v = self.randn(1, 2, 3, 4), self.randn(1, 2, 5, 4), self.randn(1, 2, 5, 4)
        keep = np.ones((3, 5), bool)
        keep[:, 3:] = False
        bias = self.randn(1, 5)
        bias0 = bias.copy()
        with attn.Mask(keep=keep, bias=bias) as mask, attn.Sdpa(1, 2, 2, 3, 5, 4) as op:
            keep[:] = True   # the caller's arrays change; the mask's do not
            bias[:] = 100
            want = ref_sdpa(q, k, v, visible=np.arange(5) < 3, bias=bias0)[0]
            gc.collect()
            assert_close(self, op.forward(q, k, v, mask=mask), want)
            mask.clear()
            assert_close(self, op.forward(q, k, v, mask=mask), ref_sdpa(q, k, v)[0])
            mask.set_kv_lengths([2])
            mask.set_keep(np.array([True, False, True, True, True]))
            visible = np.array([True, False, False, False, False])
            assert_close(self, op.forward(q, k, v, mask=mask), ref_sdpa(q, k, v, visible)[0])
            with self.assertRaises(ValueError):
                op.forward(q, k, v, mask=mask, kv_lengths=[1])

    def test_runtime_info_and_status_string(self):
        info = attn.runtime_info()
        keys = [line.split(":")[0] for line in info.splitlines()]
        for key in ("version", "blas", "threads", "schedule", "advice"):
            self.assertIn(key, keys)
        self.assertIn(f"version: {attn.version()}\n", info)
        self.assertTrue(attn.status_string(attn.ATTN_ERR_STATE).startswith("ATTN_ERR_STATE"))
        self.assertTrue(attn.status_string(99))   # never empty, also outside the enum


class Errors(unittest.TestCase):
    def test_libattn_status_and_message(self):
        z = np.zeros
        with self.assertRaises(attn.AttnError) as cm:
            attn.sdpa(z((1, 6, 3, 2)), z((1, 4, 3, 2)), z((1, 4, 3, 2)))
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_SHAPE_MISMATCH)
        self.assertEqual(cm.exception.status_name, "ATTN_ERR_SHAPE_MISMATCH")
        self.assertEqual(cm.exception.message,
                         "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)")

        with self.assertRaises(attn.AttnError) as cm:
            attn.sdpa(z((1, 1, 3, 2)), z((1, 1, 3, 2)), z((1, 1, 3, 2)), kv_lengths=[5])
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_INVALID_ARGUMENT)
        self.assertIn("valid length 5", cm.exception.message)

        with self.assertRaises(attn.AttnError) as cm:
            attn.sdpa(z((1, 1, 3, 2)), z((1, 1, 3, 2)), z((1, 1, 3, 2)), scale=float("nan"))
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_INVALID_ARGUMENT)

        layer = attn.MultiheadAttention(4, 2, bias=False)
        layer.set_weights("q", np.eye(4))
        with self.assertRaises(attn.AttnError) as cm:
            layer(z((1, 2, 4)))
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
        self.assertIn("attn_mha_forward", cm.exception.message)

        with self.assertRaises(attn.AttnError) as cm:
            attn.MultiheadAttention(10, 4)
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_SHAPE_MISMATCH)

        with self.assertRaises(attn.AttnError) as cm:
            attn.Context(-1)
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_INVALID_ARGUMENT)

    def test_shapes_checked_before_libattn(self):
        z = np.zeros
        with self.assertRaises(attn.AttnError) as cm:
            attn.sdpa(z((1, 1, 3, 2)), z((1, 1, 3, 3)), z((1, 1, 3, 2)))
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_SHAPE_MISMATCH)
        with self.assertRaises(attn.AttnError):
            attn.MultiheadAttention(4, 2).set_weights("k", z((4, 3)))

    def test_every_tensor_checked_before_the_c_call(self):
        """Each wrong shape or dtype raises before libattn runs (the C function
        is replaced by one that fails the test), with the status and a message
        naming the function and the tensor."""
        z, rng = np.zeros, np.random.default_rng(0)
        op = attn.Sdpa(1, 2, 1, 3, 4, 2, 5)
        layer = attn.MultiheadAttention(4, 2)
        layer.set_params(rng.standard_normal(layer.param_count))
        act = attn.Activations()
        layer.forward_train(act, z((1, 3, 4)))
        enc = attn.EncoderLayer(4, 2, 8)
        cache = attn.KVCache(1, 2, 5, 2, 4)
        seq = cache.seq_open()
        rope = attn.Rope(4)
        addi = attn.AdditiveAttention(2, 3, 4)
        good = dict(q=z((1, 2, 3, 2)), k=z((1, 1, 4, 2)), v=z((1, 1, 4, 5)))
        shape, invalid = attn.ATTN_ERR_SHAPE_MISMATCH, attn.ATTN_ERR_INVALID_ARGUMENT
        cases = [
            ("_sdpa_forward", lambda: op.forward(**dict(good, k=z((1, 2, 4, 2)))), shape,
             "attn_sdpa_forward: k has shape (1, 2, 4, 2), expected (1, 1, 4, 2)"),
            ("_sdpa_forward", lambda: op.forward(**good, keep=z((1, 3, 3, 4), bool)), shape,
             "attn_sdpa_forward: the mask's keep has shape (1, 3, 3, 4)"),
            ("_sdpa_forward", lambda: op.forward(**good, kv_lengths=[[1, 2]]), shape,
             "attn_sdpa_forward: the mask's kv_lengths has shape (1, 2)"),
            ("_sdpa_forward", lambda: op.forward(**good, kv_lengths=[1.5]), invalid,
             "attn_sdpa_forward: kv_lengths has dtype float64"),
            ("_sdpa_forward", lambda: op.forward(**dict(good, q=z((1, 2, 3, 2), complex))),
             invalid, "attn_sdpa_forward: q has dtype complex128"),
            ("_sdpa_backward", lambda: op.backward(**good, out=z((1, 2, 3, 5)), lse=z((1, 2, 4)),
                                                   d_out=z((1, 2, 3, 5))), shape,
             "attn_sdpa_backward: lse has shape (1, 2, 4), expected (1, 2, 3)"),
            ("_sdpa_backward", lambda: op.backward(**good, out=z((1, 2, 3, 5)), lse=z((1, 2, 3)),
                                                   d_out=z((1, 2, 5, 3))), shape,
             "attn_sdpa_backward: d_out has shape"),
            ("_sdpa_set_alibi", lambda: op.set_alibi([1.0]), shape,
             "attn_sdpa_set_alibi: slopes has shape (1,), expected (2,)"),
            ("_sdpa_set_dropout", lambda: op.set_dropout(0.1, -1), invalid,
             "attn_sdpa_set_dropout: seed (-1)"),
            ("_sdpa_forward_cached", lambda: op.forward_cached(cache, [seq], [0, 2], z((1, 2, 2))),
             shape, "attn_sdpa_forward_cached: q has shape (1, 2, 2), expected (2, 2, 2)"),
            ("_sdpa_forward_cached", lambda: op.forward_cached(cache, [seq], [0], z((0, 2, 2))),
             shape, "attn_sdpa_forward_cached: cu_q has shape (1,), expected (2,)"),
            ("_sdpa_forward_cached", lambda: op.forward_cached(cache, [seq, seq], [0, 2, 1],
                                                               z((1, 2, 2))),
             invalid, "attn_sdpa_forward_cached: cu_q [0, 2, 1]"),
            ("_mha_forward_cached", lambda: layer.forward_cached(cache, seq, None, z((1, 4))),
             shape, "attn_mha_forward_cached: the cache's heads_kv, dim_qk, dim_v (1, 2, 5)"),
            ("_mha_set_params", lambda: layer.set_params(z(3)), shape,
             f"attn_mha_set_params: params has shape (3,), expected ({layer.param_count},)"),
            ("_mha_backward", lambda: layer.backward(act, z((1, 3, 5))), shape,
             "attn_mha_backward: d_out has shape (1, 3, 5), expected (1, 3, 4)"),
            ("_mha_forward_train", lambda: layer.forward_train(act, z((1, 3, 5))), shape,
             "attn_mha_forward_train: query (1, 3, 5)"),
            ("_mha_set_rope", lambda: layer.set_rope(attn.Rope(6)), shape,
             "attn_mha_set_rope: the rope's head_dim (6)"),
            ("_encoder_forward", lambda: enc(z((2, 3, 5))), shape,
             "attn_encoder_layer_forward: src has shape (2, 3, 5), expected (*, *, 4)"),
            ("_encoder_backward", lambda: enc.backward(act, z((1, 3, 4))), attn.ATTN_ERR_STATE,
             "attn_encoder_layer_backward: act holds no training forward of this layer"),
            ("_additive_forward", lambda: addi(z((1, 2, 2)), z((2, 3, 3))), shape,
             "attn_additive_forward: keys has shape (2, 3, 3), expected (1, *, 3)"),
            ("_layer_norm", lambda: attn.layer_norm(z((2, 3)), z(3), z(2)), shape,
             "attn_layer_norm: bias has shape (2,), expected (3,)"),
            ("_layer_norm_backward", lambda: attn.layer_norm_backward(z((2, 3)), z(3), z((3, 2))),
             shape, "attn_layer_norm_backward: d_y has shape (3, 2), expected (2, 3)"),
            ("_nadaraya_watson_backward",
             lambda: attn.nadaraya_watson_backward(z(3), z(4), z(3), z(3)), shape,
             "attn_nadaraya_watson_backward: values has shape (3,), expected (4,)"),
            ("_rope_apply", lambda: rope.apply(z((1, 2, 3, 5))), shape,
             "attn_rope_apply: x has shape (1, 2, 3, 5), expected (*, *, *, 4)"),
            ("_rope_apply", lambda: rope.apply(z((1, 2, 3, 4)), z((1, 2), int)), shape,
             "attn_rope_apply: positions has shape (1, 2), expected (1, 3)"),
            ("_rope_set_tables", lambda: rope.set_tables(z((5, 2)), z((4, 2))), shape,
             "attn_rope_set_tables: sin has shape (4, 2), expected (5, 2)"),
            ("_kv_cache_append", lambda: cache.append(seq, z((2, 1, 2)), z((1, 1, 5))), shape,
             "attn_kv_cache_append: v has shape (1, 1, 5), expected (2, 1, 5)"),
            ("_merge_partials", lambda: attn.merge_partials([z((2, 3)), z((2, 4))], [z(2), z(2)]),
             shape, "attn_merge_partials: outs[1] has shape (2, 4), expected (2, 3)"),
            ("_positional_encoding", lambda: attn.positional_encoding(-1, 4), invalid,
             "attn_positional_encoding: len (-1) is below 0"),
        ]
        for c_function, call, status, message in cases:
            with self.subTest(message), \
                    mock.patch.object(attn, c_function, side_effect=AssertionError("called")):
                with self.assertRaises(attn.AttnError) as cm:
                    call()
                self.assertEqual(cm.exception.status, status)
                self.assertTrue(cm.exception.message.startswith(message), cm.exception.message)
        self.assertEqual(cache.seq_len(seq), 0)   # the refused append left no token
        for obj in (op, layer, act, enc, cache, rope, addi):
            obj.close()

    def test_libattn_failures_of_the_new_calls(self):
        """Refusals that only libattn makes: its status and attn_last_error()."""
        cases = [
            (lambda: attn.Sdpa(1, 1, 1, 1, 1, 2).set_dropout(1.0), attn.ATTN_ERR_INVALID_ARGUMENT,
             "attn_sdpa_set_dropout: p (1) is not in [0, 1)"),
            (lambda: attn.Sdpa(1, 1, 1, 1, 1, 2).set_window(-2, 0),
             attn.ATTN_ERR_INVALID_ARGUMENT, "attn_sdpa_set_window"),
            (lambda: attn.MultiheadAttention(4, 2).set_softcap(-1.0),
             attn.ATTN_ERR_INVALID_ARGUMENT, "attn_mha_set_softcap"),
            (lambda: attn.Rope(4, 3), attn.ATTN_ERR_INVALID_ARGUMENT, "attn_rope_create"),
            (lambda: attn.EncoderLayer(6, 4, 8), attn.ATTN_ERR_SHAPE_MISMATCH,
             "attn_encoder_layer_create"),
            (lambda: attn.MultiheadAttention(4, 2).get_params(), attn.ATTN_ERR_STATE,
             "attn_mha_get_params"),
            (lambda: attn.KVCache(1, 2, 2, 2, 0), attn.ATTN_ERR_INVALID_ARGUMENT,
             "attn_kv_cache_create"),
            (lambda: attn.layer_norm(np.zeros((2, 3)), np.ones(3), np.zeros(3), eps=-1.0),
             attn.ATTN_ERR_INVALID_ARGUMENT, "attn_layer_norm"),
        ]
        for call, status, message in cases:
            with self.subTest(message):
                with self.assertRaises(attn.AttnError) as cm:
                    call()
                self.assertEqual(cm.exception.status, status)
                self.assertTrue(cm.exception.message.startswith(message), cm.exception.message)
        enc = attn.EncoderLayer(4, 2, 8)   # forward_cached needs a causal layer
        enc.set_params(np.zeros(enc.param_count))
        with attn.KVCache(2, 2, 2, 2, 4) as cache, self.assertRaises(attn.AttnError) as cm:
            enc.forward_cached(cache, cache.seq_open(), None, np.zeros((1, 4)))
        self.assertEqual(cm.exception.status, attn.ATTN_ERR_STATE)
        self.assertIn("attn_encoder_layer_forward_cached", cm.exception.message)

    def test_sizes_and_mask_arrays_cannot_be_changed(self):
        """Attributes that size libattn's buffers, and the arrays a Mask hands
        to libattn, cannot be rebound or written: libattn would write past a
        buffer or read freed memory."""
        op = attn.Sdpa(1, 2, 2, 3, 4, 8)
        layer = attn.MultiheadAttention(8, 2)
        cache = attn.KVCache(2, 4, 4, 4, 2)
        for obj, name in ((op, "len_q"), (op, "layout"), (layer, "param_count"),
                          (layer, "embed_dim"), (cache, "dim_v")):
            with self.assertRaises(AttributeError):
                setattr(obj, name, 1)
        mask = attn.Mask(kv_lengths=[3])
        with self.assertRaises(AttributeError):
            mask.kv_lengths = None
        with self.assertRaises(ValueError):
            mask.kv_lengths[0] = 1
        mask.set_kv_lengths([2])          # the class's own setters still work
        self.assertEqual(mask.kv_lengths.tolist(), [2])
        op.set_layout("bshd")
        self.assertEqual(op.layout, "bshd")
        layer.note = "a user's own attribute"   # other attributes are free
        for obj in (op, layer, cache, mask):
            obj.close()

    def test_every_exported_function_is_wrapped(self):
        """debian/libattn1.symbols lists libattn.so.1's ABI: the module calls all
        of it but attn_set_error (for C code that reports through libattn)."""
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "debian",
                            "libattn1.symbols")
        with open(path) as f:
            exported = set(re.findall(r"^ (attn_[a-z0-9_]+)@", f.read(), re.M))
        self.assertGreaterEqual(len(exported), 90)
        self.assertEqual(len(attn._DECLARED), len(set(attn._DECLARED)))
        self.assertEqual(exported - set(attn._DECLARED), {"attn_set_error"})
        self.assertEqual(set(attn._DECLARED) - exported, set())

    def test_version(self):
        self.assertEqual(attn.version().count("."), 2)
        self.assertGreaterEqual(attn.version_number(), 10000)


if __name__ == "__main__":
    unittest.main(verbosity=1)
