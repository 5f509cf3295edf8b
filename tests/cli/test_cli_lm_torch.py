"""A checkpoint of `attn train lm` is the PyTorch model of
examples/pytorch/lm_load.py: trained for one epoch (12 AdamW steps) on the
Tang poems, with every kind of positions (window, line, clause, grid), it is loaded
into torch.nn (nn.Embedding, nn.TransformerEncoderLayer, nn.LayerNorm,
nn.Linear) and run over a poem's start and what `attn generate --greedy`
continued it with; every logit row `attn generate --logits` wrote (cached
decoding, one token at a time) must equal PyTorch's full causal forward at
that position within 1e-4 relative to the row's largest magnitude, and
PyTorch's own greedy choice must be the character attn chose; the last
layer's attention weights `attn generate --attention` wrote, and every
layer's in the page `attn generate --explore` wrote, must be PyTorch's
within 1e-4.

Needs Debian's python3-torch and fortunes-zh (installed by .ci/run); skipped
with the reason when either is missing.

Run by Meson as: python3 test_cli_lm_torch.py PATH-TO-attn
"""
import os
import sys

import numpy as np

from clitest import SKIP, TempDir, attn_path, explorer_data, run_ok

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = "/usr/share/games/fortunes/tang300"
PROMPT = "《静夜思》\n作者：李白\n床前明月光，"
TOL = 1e-4


def layer_weights(model, tokens):
    """PyTorch's attention weights [layers, heads, n, n] of every layer."""
    import torch
    t = torch.tensor([tokens])
    n = t.shape[1]
    causal = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
    weights = []
    with torch.no_grad():
        x = model.tok_emb(t) * model.scale + model.encoding(model.positions(t))
        for layer in model.layers:
            y = layer.norm1(x) if layer.norm_first else x
            _, w = layer.self_attn(y, y, y, attn_mask=causal, need_weights=True,
                                   average_attn_weights=False)
            weights.append(w[0].numpy())
            x = layer(x, src_mask=causal)
    return np.stack(weights)


def main():
    attn = attn_path()
    try:
        import torch
    except ImportError:
        print("SKIP: python3-torch is not installed (apt-get install python3-torch)")
        sys.exit(SKIP)
    if not os.path.exists(CORPUS):
        print("SKIP: %s is missing (apt-get install fortunes-zh)" % CORPUS)
        sys.exit(SKIP)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "pytorch"))
    import lm_load
    torch.set_num_threads(2)
    with TempDir() as t:
        for positions in ("window", "line", "clause", "grid"):
            model_dir = t.p("lm-" + positions)
            run_ok(attn, "train", "lm", "--corpus", CORPUS, "--epochs", "1", "--seed", "3",
                   "--positions", positions, "--out", model_dir)
            model, vocab = lm_load.load(model_dir)
            index = {ch: i for i, ch in enumerate(vocab)}
            prompt = "".join(ch for ch in PROMPT if ch in index)  # a 12-step model's vocabulary
            text = run_ok(attn, "generate", "--model", model_dir, "--prompt", prompt,
                          "--greedy", "--max-new", "40", "--logits", t.p("logits.npy"),
                          "--attention", t.p("attention.npy"), "--explore", t.p("page.html"))
            assert text.endswith("\n"), text
            text = text[:-1]  # the one line break attn generate ends its text with
            assert text.startswith(prompt), (prompt, text)
            logits = np.load(t.p("logits.npy"))
            tokens = [1] + [index[ch] for ch in text]
            steps = len(tokens) - (1 + len(prompt))
            assert steps > 0 and logits.shape[0] in (steps, steps + 1), (logits.shape, steps)
            with torch.no_grad():
                ref = model(torch.tensor([tokens]))[0].numpy()
            worst = 0.0
            for k in range(logits.shape[0]):
                row = ref[len(prompt) + k]  # the position of the last token fed
                err = np.max(np.abs(logits[k] - row)) / np.max(np.abs(row))
                worst = max(worst, err)
                assert err <= TOL, "positions %s, step %d: error %.3g" % (positions, k, err)
                if k < steps:  # PyTorch's greedy choice (never <unk>) is attn's
                    assert int(np.argmax(row[1:])) + 1 == tokens[1 + len(prompt) + k], k
            ref_w = layer_weights(model, tokens)
            weights = np.load(t.p("attention.npy"))  # the last layer's
            assert weights.shape == ref_w.shape[1:], (weights.shape, ref_w.shape)
            w_err = float(np.max(np.abs(weights - ref_w[-1])))
            assert w_err <= TOL, "positions %s: attention weights off by %.3g" % (positions, w_err)
            # The explorer's page: every layer's weights, the characters as tokens.
            meta, page = explorer_data(t.p("page.html"))
            assert page.shape == (ref_w.shape[0], 1) + ref_w.shape[1:], page.shape
            assert np.array_equal(page[-1, 0], weights), "the page's last layer differs"
            page_err = float(np.max(np.abs(page[:, 0] - ref_w)))
            assert page_err <= TOL, "positions %s: the page's weights off by %.3g" % (
                positions, page_err)
            labels = meta["queryTokens"][0]
            assert labels[0] == "<eos>" and "".join(
                "\n" if c == "\u21b5" else c for c in labels[1:]) == text, labels
            print("positions %s: %d steps, logits against PyTorch 1.13: worst relative error "
                  "%.2g (bound %g); every layer's attention weights %s: max |diff| %.2g (the "
                  "last layer's %.2g)" % (positions, logits.shape[0], worst, TOL,
                                          list(ref_w.shape), page_err, w_err))


if __name__ == "__main__":
    main()
