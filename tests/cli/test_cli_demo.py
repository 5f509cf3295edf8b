"""`attn demo` prints the seeds' numbers, and its Nadaraya-Watson fits are in
the order D2L 10.2 teaches (the parametric w = 3 beats the non-parametric w = 1).

Run by Meson as: python3 test_cli_demo.py PATH-TO-attn
"""
import os
import re

import numpy as np

from clitest import TempDir, attn_path, explorer_data, run_ok

# UvA tutorial 6 (seed 004) prints these blocks; Values[0][0] is 0.5697 where
# the tutorial printed 0.5698, because its inputs are published rounded to 4
# decimals (float64 NumPy gives 0.56974 from them too).
UVA_VALUES_ATTENTION = """Values
 tensor([[ 0.5697, -0.1520],
        [ 0.5379, -0.0265],
        [ 0.2246,  0.5556]])
Attention
 tensor([[0.4028, 0.2886, 0.3086],
        [0.3538, 0.3069, 0.3393],
        [0.1303, 0.4630, 0.4067]])
"""

UVA_INPUTS = """Q
 tensor([[ 0.3367,  0.1288],
        [ 0.2345,  0.2303],
        [-1.1229, -0.1863]])
"""

# D2L 10.3: valid_lens [2, 6] average the first 2 and 6 rows of arange(40).
D2L_OUTPUT = """ tensor([[[ 2.0000,  3.0000,  4.0000,  5.0000]],

        [[10.0000, 11.0000, 12.0000, 13.0000]]])
"""


def main():
    attn = attn_path()
    with TempDir() as t:
        out = run_ok(attn, "demo", "--out", t.p("pictures"))
        assert UVA_INPUTS in out, "example 1 inputs not printed like the seed:\n" + out
        assert UVA_VALUES_ATTENTION in out, "example 1 Values/Attention differ:\n" + out
        assert "0.5698" in out and "rounded" in out, "the 0.5697/0.5698 footnote is missing"

        dot = out.index("Dot-product attention\n")
        add = out.index("Additive attention")
        assert out[dot:].split("\n", 1)[1].startswith(D2L_OUTPUT), out[dot:]
        assert out[add:].split("\n", 1)[1].startswith(D2L_OUTPUT), out[add:]

        w1 = float(re.search(r"non-parametric \(w = 1\): ([0-9.]+)", out).group(1))
        w3 = float(re.search(r"parametric +\(w = 3\): ([0-9.]+)", out).group(1))
        print("Nadaraya-Watson MSE: w = 1: %.4f, w = 3: %.4f" % (w1, w3))
        assert 0 < w3 < w1, "the parametric fit should beat the non-parametric one"

        assert "above the diagonal" in out and ": 0.0000" in out.split("above the diagonal")[1]

        # Section 6 trains the reversal Transformer past 99% (the bar
        # for the demo's short run; test_cli_train_reverse checks the training).
        section = out[out.index("== 6. UvA tutorial 6"):]
        accuracy = float(re.search(r"^test accuracy: ([0-9.]+)%$", section, re.M).group(1))
        print("reversal model after the demo's 4 epochs: test accuracy %.2f%%" % accuracy)
        assert accuracy >= 99.0, section

        for name in ["uva-attention.svg", "masked-attention.svg", "nw-attention.svg",
                     "nw-regression.svg", "nw-training-loss.svg", "nw-trained-fit.svg",
                     "mha-causal.svg", "reverse-training-loss.svg", "reverse-attention.svg",
                     "reverse-attention.npy"]:
            path = t.p(os.path.join("pictures", name))
            assert os.path.getsize(path) > 0, path
            said = "weights: " if name.endswith(".npy") else "picture: "
            assert "%s%s\n" % (said, path) in out, "the demo does not say it wrote " + path
        # The explorer's pages: the causal example's 4 heads (lower triangular,
        # rows summing to 1) and the trained reversal map (its .npy's weights).
        for name in ["mha-causal.html", "reverse-attention.html"]:
            assert "explorer: %s (open it in a browser)\n" % t.p(os.path.join("pictures", name)) \
                in out, "the demo does not say it wrote " + name
        meta, mha = explorer_data(t.p(os.path.join("pictures", "mha-causal.html")))
        assert mha.shape == (1, 1, 4, 10, 10), mha.shape
        assert np.all(np.triu(mha[0, 0], 1) == 0) and np.allclose(mha.sum(-1), 1, atol=1e-5)
        assert meta["queryTokens"] == [["token %d" % i for i in range(10)]], meta
        _, rev = explorer_data(t.p(os.path.join("pictures", "reverse-attention.html")))
        assert np.array_equal(rev[0, 0], np.load(t.p(os.path.join("pictures",
                                                                  "reverse-attention.npy"))))
        leftovers = [f for f in os.listdir(t.p("pictures")) if ".tmp" in f]
        assert not leftovers, "temporary files left: %s" % leftovers

        # The default directory is ./attn-demo.
        run_ok(attn, "demo", cwd=t.path)
        assert os.path.isfile(t.p("attn-demo/mha-causal.svg"))


if __name__ == "__main__":
    main()
