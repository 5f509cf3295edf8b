#!/usr/bin/env python3
"""python/attn.py, the ctypes module, against NumPy on random inputs.

The references below are written plainly in float64 from the formulas of
attn.h (softmax of scale·QKᵀ + bias over the visible keys; PyTorch's
nn.MultiheadAttention for the layer). The module is found beside this
checkout (../python); the library as $ATTN_LIBRARY, else libattn.so.1.

Exit status 77 (Meson's "skipped") when NumPy is not installed.
"""
import os
import sys
import unittest

try:
    import numpy as np
except ImportError:
    print("test_python: NumPy is not installed (Debian: python3-numpy): skipped")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import attn  # noqa: E402

TOL = 2e-5


def ref_sdpa(q, k, v, visible=None, bias=None, scale=None):
    """float64 reference, [B, Hq, Lq, D] inputs; visible [B, Hq, Lq, Lkv] bool."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    logits = scale * q @ k.swapaxes(-1, -2)
    if bias is not None:
        logits = logits + bias
    if visible is None:
        visible = np.ones(logits.shape, bool)
    visible = np.broadcast_to(visible, logits.shape) & (logits > -np.inf)
    m = np.where(visible, logits, -np.inf).max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.where(visible, np.exp(np.where(visible, logits, 0) - m), 0)
    s = e.sum(axis=-1, keepdims=True)
    w = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(s[..., 0] > 0, m[..., 0] + np.log(s[..., 0]), -np.inf)
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

    def test_version(self):
        self.assertEqual(attn.version().count("."), 2)
        self.assertGreaterEqual(attn.version_number(), 10000)


if __name__ == "__main__":
    unittest.main(verbosity=1)
