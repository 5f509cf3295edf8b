"""`attn train reverse` (UvA tutorial 6's sequence reversal) learns: a reduced
run (12,800 training sequences, 10 epochs: 1,000 Adam steps, about 5 s on 2
cores) must bring the training loss from ln 10 = 2.30 (chance: the model
starts knowing nothing) below 1.0 and the test accuracy above 60%, and its
attention map must have its maximum on the anti-diagonal for most queries
(query i attends to input 15 - i, the only place its answer is). With
wrong gradients the loss stays on the plateau at ln 10: measured on this
reduced run, with the encoder layer's parameter gradients zeroed it ends at
2.289 (13% accuracy), with the sign of the gradient entering the encoder
layer flipped at 2.313 (11%); the correct run ends at 0.36 (91%). (Fewer
steps would not tell: 300 correct steps end at 2.296, before the model
finds the anti-diagonal.) The README's full run (50,000 sequences, 10
epochs) reaches 100%.
Also: the progress and last lines, the pictures and weights of --out,
determinism (the same seed twice gives the same lines but the times), and
usage errors.

Run by Meson as: python3 test_cli_train_reverse.py PATH-TO-attn
"""
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from clitest import TempDir, attn_path, explorer_data, run, run_ok

PROGRESS = re.compile(r"^epoch +(\d+)/(\d+): loss ([0-9.]+), accuracy ([0-9.]+)%, ([0-9.]+) s$",
                      re.M)


def without_times(out):
    """The output without the times and the lines naming --out's files."""
    named = ("picture: ", "weights: ", "explorer: ")
    lines = [l for l in out.split("\n") if not l.startswith(named)]
    return re.sub(r"[0-9.]+ s\b|[0-9]+ sequences/s", "", "\n".join(lines))


def main():
    attn = attn_path()
    with TempDir() as t:
        args = ["train", "reverse", "--epochs", "10", "--train-size", "12800", "--test-size",
                "256", "--seed", "42"]
        out = run_ok(attn, *args, "--out", t.p("pics"))
        print(out)
        epochs = [(int(e), int(n), float(l), float(a)) for e, n, l, a, _ in PROGRESS.findall(out)]
        assert [e for e, *_ in epochs] == list(range(1, 11)) and all(n == 10 for _, n, *_ in
                                                                   epochs), out
        assert epochs[0][2] > 2.0, "the first epoch starts near ln 10: %s" % out
        assert epochs[-1][2] < 1.0, "the loss must fall below 1.0: %s" % out
        last = out.rstrip("\n").split("\n")[-1]
        m = re.fullmatch(r"test accuracy: ([0-9]+\.[0-9]{2})%", last)
        assert m, "last line %r" % last
        assert float(m.group(1)) > 60.0, last
        assert re.search(r"^trained in [0-9.]+ s: 1000 steps, [0-9]+ sequences/s$", out, re.M), out

        for name in ["reverse-training-loss.svg", "reverse-attention.svg"]:
            path = t.p(os.path.join("pics", name))
            assert "picture: %s\n" % path in out, out
            assert ET.parse(path).getroot().tag.endswith("svg")
        weights = np.load(t.p(os.path.join("pics", "reverse-attention.npy")))
        assert weights.shape == (1, 16, 16) and weights.dtype == np.float32, weights.shape
        assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5), "rows of weights sum to 1"
        on_anti_diagonal = sum(int(np.argmax(weights[0, i]) == 15 - i) for i in range(16))
        print("queries whose largest weight is on the anti-diagonal: %d of 16" % on_anti_diagonal)
        assert on_anti_diagonal >= 12, weights[0]
        # The same weights in the explorer's page, the test digits as tokens.
        page = t.p(os.path.join("pics", "reverse-attention.html"))
        assert "explorer: %s (open it in a browser)\n" % page in out, out
        meta, page_weights = explorer_data(page)
        assert np.array_equal(page_weights[0, 0], weights), "the page's weights differ"
        # The tokens are the test sequence, the digits the heatmap's title gives.
        title = re.search(r"input((?: [0-9])+)<", open(t.p(os.path.join(
            "pics", "reverse-attention.svg")), encoding="utf-8").read())
        assert title and meta["queryTokens"] == [title.group(1).split()], (meta, title)

        # The same seed gives the same run (libattn's bits do not depend on the
        # thread count; only the times differ).
        again = run_ok(attn, *args, "--threads", "1")
        assert without_times(again) == without_times(out), (without_times(again),
                                                            without_times(out))

    for argv, want in [(["train", "reverse", "--epochs", "0"], 2),
                       (["train", "reverse", "--train-size", "100"], 2),
                       (["train", "reverse", "--threads", "-1"], 2),
                       (["train", "reverse", "--seed", "x"], 2),
                       (["train", "reverse", "--help"], 0)]:
        rc, out, err = run(attn, *argv)
        assert rc == want, "attn %s: exit %d, want %d\n%s%s" % (" ".join(argv), rc, want, out,
                                                                 err)


if __name__ == "__main__":
    main()
