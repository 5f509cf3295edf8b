"""`attn train lm` and `attn generate`:

 1. a reduced run (6 epochs, 90 AdamW steps) on the Tang and Song poems
    of fortunes-zh learns: its validation loss (per character of the
    held-out poems of heldout.txt) is below the add-one unigram model's
    (computed here from the training poems: all poems minus the held-out
    ones), and is reported beside the interpolated bigram model's (which
    the full default run beats, 40 epochs: docs/text-generation.md);
 2. the checkpoint: config.json's keys, vocab.json ("<unk>", "<eos>", then
    characters in code-point order), one float32 .npy per state_dict key
    with the shapes the config implies, heldout.txt;
 3. generation: stdout is exactly the prompts and their continuations;
    --greedy gives the same text with the KV cache and with --no-cache, for
    three prompts of different lengths decoded as one batch; a seed repeats
    its draws; statistics go to stderr;
 4. errors, each a clear message and exit 1 (2 for usage) with nothing
    written: a missing, empty or non-UTF-8 corpus, a one-poem corpus; a
    checkpoint with a missing tensor, a wrong shape, a vocabulary of another
    size or a broken config; a prompt with a character not in the
    vocabulary; a prompt plus --max-new beyond the context.

Needs fortunes-zh (installed by .ci/run); skipped with the reason otherwise.

Run by Meson as: python3 test_cli_lm.py PATH-TO-attn
"""
import json
import math
import os
import re
import shutil
import sys
from collections import Counter

import numpy as np

from clitest import SKIP, TempDir, attn_path, run, run_ok

CORPUS = ["/usr/share/games/fortunes/tang300", "/usr/share/games/fortunes/song100"]
PROGRESS = re.compile(r"^epoch +(\d+)/(\d+): train ([0-9.]+), validation ([0-9.]+) nats/char, "
                      r"([0-9]+) chars/s, ([0-9.]+) s$", re.M)


def poems_of(text):
    text = re.sub(r"\x1b\[[0-9;]*m", "", text.replace("\r", ""))
    out, entry = [], []
    for line in text.split("\n") + ["%"]:
        if line.rstrip() == "%":
            lines = [l for l in entry if l.strip(" \t\u3000")]
            if lines:
                out.append("\n".join(lines))
            entry = []
        else:
            entry.append(line)
    return out


def baselines(train, held):
    """Add-one unigram and interpolated bigram losses (nats per target) on
    the held-out poems' targets: every character and the closing <eos>, each
    predicted from the one before (<eos> before the first)."""
    seqs = [["<eos>"] + list(p) + ["<eos>"] for p in train]
    vocab = {c for s in seqs for c in s} | {"<unk>"}
    uni = Counter(c for s in seqs for c in s[1:])
    big = Counter((a, b) for s in seqs for a, b in zip(s, s[1:]))
    ctx = Counter(a for s in seqs for a in s[:-1])
    total, v = sum(uni.values()), len(vocab)

    def p_uni(c):
        return (uni[c] + 1) / (total + v)

    def loss(f):
        n, s = 0, 0.0
        for p in held:
            q = ["<eos>"] + list(p) + ["<eos>"]
            for a, b in zip(q, q[1:]):
                s -= math.log(f(a, b))
                n += 1
        return s / n

    unigram = loss(lambda a, b: p_uni(b))
    best = min((loss(lambda a, b, lam=lam: lam * (big[(a, b)] / ctx[a] if ctx[a] else 0.0) +
                     (1 - lam) * p_uni(b)), lam) for lam in np.linspace(0.05, 0.95, 19))
    return unigram, best[0], best[1]


def check_checkpoint(model):
    config = json.load(open(os.path.join(model, "config.json"), encoding="utf-8"))
    for key in ("vocab_size", "d_model", "nhead", "dim_feedforward", "num_layers", "context",
                "activation", "layer_norm_eps", "norm_first"):
        assert key in config, key
    vocab = json.load(open(os.path.join(model, "vocab.json"), encoding="utf-8"))
    assert vocab[:2] == ["<unk>", "<eos>"] and len(vocab) == config["vocab_size"]
    assert all(len(c) == 1 for c in vocab[2:]) and vocab[2:] == sorted(vocab[2:])
    d, ff, v = config["d_model"], config["dim_feedforward"], config["vocab_size"]
    shapes = {"tok_emb.weight": (v, d), "norm.weight": (d,), "norm.bias": (d,),
              "lm_head.weight": (v, d), "lm_head.bias": (v,)}
    for l in range(config["num_layers"]):
        p = "layers.%d." % l
        shapes.update({p + "self_attn.in_proj_weight": (3 * d, d),
                       p + "self_attn.in_proj_bias": (3 * d,),
                       p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
                       p + "linear1.weight": (ff, d), p + "linear1.bias": (ff,),
                       p + "linear2.weight": (d, ff), p + "linear2.bias": (d,),
                       p + "norm1.weight": (d,), p + "norm1.bias": (d,),
                       p + "norm2.weight": (d,), p + "norm2.bias": (d,)})
    files = {f[:-4] for f in os.listdir(model) if f.endswith(".npy")}
    assert files == set(shapes), files ^ set(shapes)
    for name, shape in shapes.items():
        a = np.load(os.path.join(model, name + ".npy"))
        assert a.dtype == np.float32 and a.shape == shape and np.all(np.isfinite(a)), name
    return config, vocab


def check_generation(attn, model, vocab):
    prompts = ["《春望》\n作者：杜甫\n国破山河在，", "", "《静夜思》"]
    prompts = ["".join(c for c in p if c in vocab) for p in prompts]
    args = ["generate", "--model", model, "--greedy", "--max-new", "30"]
    for p in prompts:
        args += ["--prompt", p]
    rc, cached, err = run(attn, *args)
    assert rc == 0 and "KV cache" in err and "per second" in err, err
    rc, uncached, err = run(attn, *args, "--no-cache")
    assert rc == 0 and "no cache" in err, err
    assert cached == uncached, (cached, uncached)
    # Each text, then "\n", and a blank line between texts: the prompts in
    # order, each followed by something generated.
    rest, generated = cached, 0
    for i, p in enumerate(prompts):
        assert rest.startswith(p), (p, rest)
        rest = rest[len(p):]
        end = rest.find("\n\n" + prompts[i + 1]) if i + 1 < len(prompts) else len(rest) - 1
        assert end >= 0 and all(c in vocab for c in rest[:end]), rest
        generated += len(rest[:end])
        rest = rest[end + 2:]
    assert generated > 0, "something must have been generated: %r" % cached
    a = run_ok(attn, "generate", "--model", model, "--seed", "9", "--top-k", "20")
    b = run_ok(attn, "generate", "--model", model, "--seed", "9", "--top-k", "20")
    c = run_ok(attn, "generate", "--model", model, "--seed", "10", "--top-k", "20")
    assert a == b and a != c, (a, b, c)
    print("greedy, 3 prompts in one batch: the same text with and without the cache\n" + cached)


def check_errors(attn, t, model, vocab):
    def refused(args, message, status=1):
        rc, out, err = run(attn, *args)
        assert rc == status and message in err, (args, rc, out, err)

    with open(t.p("empty.txt"), "w"):
        pass
    with open(t.p("latin1.txt"), "wb") as f:
        f.write("《诗》\n床前\n%\n".encode("utf-8") + b"\xe9t\xe9\n")
    with open(t.p("one.txt"), "w", encoding="utf-8") as f:
        f.write("《一》\n一二三\n%\n")
    out = t.p("never")
    refused(["train", "lm", "--corpus", t.p("missing.txt"), "--out", out], "cannot open")
    refused(["train", "lm", "--corpus", t.p("empty.txt"), "--out", out], "no poem")
    refused(["train", "lm", "--corpus", t.p("latin1.txt"), "--out", out], "not UTF-8")
    refused(["train", "lm", "--corpus", t.p("one.txt"), "--out", out], "at least 2")
    refused(["train", "lm", "--positions", "diagonal"], "--positions", 2)
    refused(["train", "lm", "--epochs", "0"], "--epochs", 2)
    assert not os.path.exists(out)

    def broken(name, change):
        d = t.p(name)
        shutil.copytree(model, d)
        change(d)
        return d

    gone = broken("gone", lambda d: os.remove(os.path.join(d, "norm.bias.npy")))
    refused(["generate", "--model", gone], "norm.bias.npy")
    shape = broken("shape", lambda d: np.save(os.path.join(d, "lm_head.bias.npy"),
                                              np.zeros(3, np.float32)))
    refused(["generate", "--model", shape], "config.json makes it")

    def fewer_tokens(d):
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab[:-1], f, ensure_ascii=False)

    refused(["generate", "--model", broken("vocab", fewer_tokens)], "vocab_size")

    def no_layers(d):
        c = json.load(open(os.path.join(d, "config.json")))
        del c["num_layers"]
        json.dump(c, open(os.path.join(d, "config.json"), "w"))

    refused(["generate", "--model", broken("config", no_layers)], "num_layers")
    refused(["generate", "--model", t.p("nowhere")], "config.json")

    def long_context(d):  # the sinusoidal positions extend to any context
        c = json.load(open(os.path.join(d, "config.json")))
        c["context"] = 2048
        json.dump(c, open(os.path.join(d, "config.json"), "w"))

    # --explore's page would outgrow its limits: refused before any character
    # is generated (nothing on stdout), with what to change.
    page = t.p("page.html")
    rc, text, err = run(attn, "generate", "--model", broken("long", long_context), "--explore",
                        page)
    assert rc == 1 and text == "" and not os.path.exists(page), (rc, text, err)
    assert "--explore: 4 layers of 4 heads over up to 2048 characters: 2048 queries and 2048 " \
           "keys: a page shows at most 1024 of each (ask for fewer characters with --max-new)" \
        in err, err
    unknown = next(chr(c) for c in range(0x4E00, 0x9FFF) if chr(c) not in vocab)
    refused(["generate", "--model", model, "--prompt", "《" + unknown], "not in the model's "
            "vocabulary")
    refused(["generate", "--model", model, "--max-new", "500"], "exceeds the model's context")
    refused(["generate", "--model", model, "--top-p", "0"], "--top-p", 2)
    refused(["generate"], "--model", 2)


def main():
    attn = attn_path()
    missing = [f for f in CORPUS if not os.path.exists(f)]
    if missing:
        print("SKIP: %s missing (apt-get install fortunes-zh)" % ", ".join(missing))
        sys.exit(SKIP)
    with TempDir() as t:
        model = t.p("lm")
        out = run_ok(attn, "train", "lm", "--epochs", "6", "--out", model)
        print(out)
        epochs = PROGRESS.findall(out)
        assert [int(e[0]) for e in epochs] == list(range(1, 7)), out
        val = float(re.search(r"^validation loss: ([0-9.]+) nats/char", out, re.M).group(1))
        assert val == min(float(e[3]) for e in epochs), "the best epoch is kept"
        held = poems_of(open(os.path.join(model, "heldout.txt"), encoding="utf-8").read())
        every = [p for f in CORPUS for p in poems_of(open(f, encoding="utf-8").read())]
        train = [p for p in every if p not in held]
        assert len(train) + len(held) == len(every) and len(held) >= 1
        unigram, bigram, lam = baselines(train, held)
        print("validation loss %.3f nats/char; add-one unigram %.3f, interpolated bigram %.3f "
              "(lambda %.2f)" % (val, unigram, bigram, lam))
        assert val < unigram, "the model must beat the unigram model"
        config, vocab = check_checkpoint(model)
        check_generation(attn, model, vocab)
        check_errors(attn, t, model, vocab)


if __name__ == "__main__":
    main()
