"""`attn run` on .npy files written by NumPy matches a NumPy float64 reference
(relative error <= 1e-5) for several shapes, both layouts, grouped-query
heads, and every mask option: --scale, --causal (both alignments),
--valid-lens (per batch and per query), --mask (2-D, 3-D, 4-D, broadcast) and
--bias (with -inf), alone and combined.

Run by Meson as: python3 test_cli_run.py PATH-TO-attn
"""
import numpy as np

from clitest import TempDir, attn_path, rel_err, run_ok, sdpa_reference

TOL = 1e-5
rng = np.random.default_rng(20240604)


def normal(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def case(name, q, k, v, layout="bhsd", scale=None, causal="none", lens=None, keep=None,
         bias=None, threads=None):
    return dict(name=name, q=q, k=k, v=v, layout=layout, scale=scale, causal=causal,
                lens=lens, keep=keep, bias=bias, threads=threads)


def cases():
    B, Hq, Hkv, Lq, Lkv, D, Dv = 2, 4, 2, 5, 7, 8, 6
    q4, k4, v4 = normal(B, Hq, Lq, D), normal(B, Hkv, Lkv, D), normal(B, Hkv, Lkv, Dv)
    qs, ks, vs = (x.transpose(0, 2, 1, 3).copy() for x in (q4, k4, v4))
    q3, k3, v3 = normal(3, 6, 16), normal(3, 9, 16), normal(3, 9, 5)
    q2, k2, v2 = normal(4, 32), normal(11, 32), normal(11, 3)
    lens_b = np.array([3, 0], np.int64)                     # row 1 sees nothing: zeros
    lens_q = rng.integers(0, Lkv + 1, (B, Lq)).astype(np.int32)
    keep2 = rng.random((Lq, Lkv)) < 0.6
    keep2[:, 0] = True
    bias2 = normal(Lq, Lkv)
    bias2[1, 2:5] = -np.inf
    yield case("bhsd_gqa_no_mask", q4, k4, v4)
    yield case("bshd_gqa_no_mask", qs, ks, vs, layout="bshd")
    yield case("3d_one_head", q3, k3, v3)
    yield case("2d_single_sequence", q2, k2, v2)
    yield case("float64_inputs_converted", q3.astype(np.float64), k3.astype(np.float64),
               v3.astype(np.float64))
    yield case("scale_0.3", q4, k4, v4, scale=0.3)
    yield case("causal_top_left_square", q3, normal(3, 6, 16), normal(3, 6, 5),
               causal="top-left")
    yield case("causal_top_left_more_queries_than_keys", normal(2, 9, 4), normal(2, 4, 4),
               normal(2, 4, 3), causal="top-left")
    yield case("causal_bottom_right_decoding", q4, k4, v4, causal="bottom-right")
    yield case("causal_bottom_right_bshd", qs, ks, vs, layout="bshd", causal="bottom-right")
    yield case("valid_lens_per_batch_int64_with_zero", q4, k4, v4, lens=lens_b)
    yield case("valid_lens_per_query_int32", q4, k4, v4, lens=lens_q)
    yield case("valid_lens_2d_inputs_scalar", q2, k2, v2, lens=np.array(5, np.int64))
    yield case("mask_2d_bool", q4, k4, v4, keep=keep2)
    yield case("mask_4d_uint8_per_batch", q4, k4, v4,
               keep=(rng.random((B, 1, Lq, Lkv)) < 0.5).astype(np.uint8))
    yield case("mask_3d_heads_for_4d_inputs", q4, k4, v4, keep=rng.random((Hq, 1, Lkv)) < 0.5)
    yield case("mask_3d_batch_for_3d_inputs", q3, k3, v3, keep=rng.random((3, 6, 9)) < 0.5)
    yield case("mask_1d_keys", q3, k3, v3, keep=np.arange(9) % 3 != 1)
    yield case("bias_2d_with_neg_inf", q4, k4, v4, bias=bias2)
    yield case("bias_4d_float64_broadcast", q4, k4, v4,
               bias=normal(1, Hq, 1, Lkv, dtype=np.float64))
    yield case("all_masks_bshd_bottom_right", qs, ks, vs, layout="bshd", scale=0.5,
               causal="bottom-right", lens=lens_q, keep=keep2, bias=bias2)
    yield case("threads_1", q4, k4, v4, threads=1)
    yield case("no_queries", normal(2, 0, 4), normal(2, 3, 4), normal(2, 3, 2))


def check(attn, t, c):
    args = ["run", "--query", t.p("q.npy"), "--key", t.p("k.npy"), "--value", t.p("v.npy"),
            "--out", t.p("o.npy"), "--weights", t.p("w.npy"), "--lse", t.p("lse.npy"),
            "--layout", c["layout"], "--causal", c["causal"]]
    np.save(t.p("q.npy"), c["q"])
    np.save(t.p("k.npy"), c["k"])
    np.save(t.p("v.npy"), c["v"])
    for opt, key in [("--valid-lens", "lens"), ("--mask", "keep"), ("--bias", "bias")]:
        if c[key] is not None:
            np.save(t.p(key + ".npy"), c[key])
            args += [opt, t.p(key + ".npy")]
    if c["scale"] is not None:
        args += ["--scale", repr(c["scale"])]
    if c["threads"] is not None:
        args += ["--threads", str(c["threads"])]
    run_ok(attn, *args)
    want = sdpa_reference(c["q"], c["k"], c["v"], c["layout"], c["scale"], c["causal"],
                          c["lens"], c["keep"], c["bias"])
    for name, ref in zip(["o.npy", "w.npy", "lse.npy"], want):
        got = np.load(t.p(name))
        assert got.dtype == np.float32, "%s: %s is %s" % (c["name"], name, got.dtype)
        err = rel_err(got, ref)
        assert err <= TOL, "%s: %s relative error %.3g" % (c["name"], name, err)
    return rel_err(np.load(t.p("o.npy")), want[0])


def main():
    attn = attn_path()
    with TempDir() as t:
        for c in cases():
            err = check(attn, t, c)
            print("ok %-45s out rel err %.2e" % (c["name"], err))

        # Any thread count gives bitwise the same result (attn.h's promise).
        q, k, v = normal(2, 8, 64, 16), normal(2, 8, 64, 16), normal(2, 8, 64, 16)
        for name, x in [("q", q), ("k", k), ("v", v)]:
            np.save(t.p(name + ".npy"), x)
        base = ["run", "--query", t.p("q.npy"), "--key", t.p("k.npy"), "--value", t.p("v.npy")]
        run_ok(attn, *base, "--out", t.p("o1.npy"), "--threads", "1")
        run_ok(attn, *base, "--out", t.p("o4.npy"), "--threads", "4")
        assert np.array_equal(np.load(t.p("o1.npy")), np.load(t.p("o4.npy")))


if __name__ == "__main__":
    main()
