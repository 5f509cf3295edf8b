"""`attn train nw` (D2L 10.2.4) follows full-batch SGD on the exact float64
loss: the data are regenerated here from tools/prng.c's generator (SplitMix64,
Box-Muller; the same seed 42 as the demo), and each epoch's loss and step are
recomputed in float64 NumPy, the gradient by central finite differences of
the loss (independent of libattn's analytic backward). The printed losses
and the w trajectory must agree to 1e-4 relative (libattn's forward is
float32). Also: the progress lines, the last line, the pictures of --out,
usage errors, and the demo's training section.

Run by Meson as: python3 test_cli_train.py PATH-TO-attn
"""
import math
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from clitest import TempDir, attn_path, run, run_ok

MASK64 = (1 << 64) - 1


class SplitMix64:
    """tools/prng.c: SplitMix64 words, uniform doubles, Box-Muller normals."""

    def __init__(self, seed):
        self.state, self.spare = seed & MASK64, None

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def normal(self, mean, stddev):
        if self.spare is not None:
            s, self.spare = self.spare, None
            return mean + stddev * s
        r = math.sqrt(-2.0 * math.log(1.0 - self.uniform()))
        theta = 2.0 * math.pi * self.uniform()
        self.spare = r * math.sin(theta)
        return mean + stddev * r * math.cos(theta)


def d2l_data(seed=42, n=50):
    g = SplitMix64(seed)
    x = np.sort(np.array([np.float32(0.0 + 5.0 * g.uniform()) for _ in range(n)], np.float32))
    truth = (2.0 * np.sin(x.astype(np.float64)) + x.astype(np.float64) ** 0.8).astype(np.float32)
    y = np.array([np.float32(truth[i] + np.float32(g.normal(0.0, 0.5))) for i in range(n)],
                 np.float32)
    return x.astype(np.float64), y.astype(np.float64)


def loss(w, x, y):
    """Σ_i (f_w(x_i) − y_i)², f pooling the other n − 1 points (D2L 10.2.4)."""
    n = len(x)
    off = ~np.eye(n, dtype=bool)
    keys = np.broadcast_to(x, (n, n))[off].reshape(n, n - 1)
    vals = np.broadcast_to(y, (n, n))[off].reshape(n, n - 1)
    s = -0.5 * ((x[:, None] - keys) * w) ** 2
    a = np.exp(s - s.max(axis=1, keepdims=True))
    f = (a * vals).sum(axis=1) / a.sum(axis=1)
    return float(((f - y) ** 2).sum())


def sgd(w0, lr, epochs, x, y):
    """[(loss before the step, w after it)] per epoch."""
    w, out = w0, []
    for _ in range(epochs):
        h = 1e-6 * max(abs(w), 1e-3)
        grad = (loss(w + h, x, y) - loss(w - h, x, y)) / (2 * h)
        out.append((loss(w, x, y), w - lr * grad))
        w = w - lr * grad
    return out


LINE = re.compile(r"^epoch +(\d+)/(\d+): loss ([0-9.]+), w (-?[0-9.]+)$", re.M)


def check_run(attn, epochs, lr, seed, x, y):
    out = run_ok(attn, "train", "nw", "--epochs", epochs, "--lr", lr, "--seed", seed)
    w0 = float(re.search(r"initial w (-?[0-9.]+)", out).group(1))
    got = [(int(e), int(n), float(l), float(w)) for e, n, l, w in LINE.findall(out)]
    assert [g[0] for g in got] == list(range(1, epochs + 1)), out
    assert all(g[1] == epochs for g in got), out
    want = sgd(w0, lr, epochs, x, y)
    worst = 0.0
    for (e, _, l, w), (wl, ww) in zip(got, want):
        err = max(abs(l - wl) / wl, abs(w - ww) / max(abs(ww), 1e-3))
        worst = max(worst, err)
        assert err < 1e-4, "epoch %d: attn loss %.6f w %.6f, float64 SGD %.6f %.6f" % (
            e, l, w, wl, ww)
    last = out.rstrip("\n").rsplit("\n", 1)[1]
    assert last == "learnt w: %.6f" % got[-1][3], last
    print("attn train nw --epochs %d --lr %g --seed %d: final loss %.6f, w %.6f; "
          "largest relative difference from float64 SGD %.2g"
          % (epochs, lr, seed, got[-1][2], got[-1][3], worst))
    return got


def main():
    attn = attn_path()
    x, y = d2l_data()
    got = check_run(attn, 5, 0.5, 7, x, y)
    assert got[-1][2] < got[0][2] * 0.5, "the loss should fall by half in D2L's 5 epochs"
    check_run(attn, 3, 0.1, 123, x, y)

    with TempDir() as t:
        out = run_ok(attn, "train", "nw", "--epochs", "4", "--out", t.p("pics"))
        for name in ["nw-training-loss.svg", "nw-trained-fit.svg"]:
            path = t.p(os.path.join("pics", name))
            assert "picture: %s\n" % path in out, out
            root = ET.parse(path).getroot()  # well-formed XML
            assert root.tag.endswith("svg"), root.tag
        # The demo trains the same way and says so.
        out = run_ok(attn, "demo", "--out", t.p("demo"))
        section = out[out.index("== 4. D2L 10.2.4"):out.index("== 5.")]
        losses = [float(v) for v in re.findall(r"^epoch \d+, loss ([0-9.]+)", section, re.M)]
        assert len(losses) == 5 and losses[-1] < losses[0], section
        assert re.search(r"learnt w: [0-9.]+", section), section
        for name in ["nw-training-loss.svg", "nw-trained-fit.svg"]:
            ET.parse(t.p(os.path.join("demo", name)))

    for args, want in [(["train"], 2), (["train", "nw", "--epochs", "0"], 2),
                       (["train", "nw", "--lr", "-1"], 2), (["train", "nw", "--lr", "abc"], 2),
                       (["train", "cat"], 2), (["train", "nw", "--help"], 0)]:
        rc, out, err = run(attn, *args)
        assert rc == want, "attn %s: exit %d, want %d\n%s%s" % (" ".join(args), rc, want, out,
                                                                 err)


if __name__ == "__main__":
    main()
