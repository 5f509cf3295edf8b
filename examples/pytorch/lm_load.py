#!/usr/bin/python3
"""Loads a checkpoint of `attn train lm` into the equivalent torch.nn model
and continues a prompt greedily (see docs/text-generation.md).

    /usr/bin/python3 examples/pytorch/lm_load.py DIR [PROMPT]

The model (PyTorch 1.13; Debian's python3-torch and python3-numpy):
token embedding times sqrt(d_model) plus D2L's sinusoidal positional
encoding (of the position in the window, or with "positions": "line" or
"clause" of the place in the line or clause), num_layers causal nn.TransformerEncoderLayer (batch_first), a final
nn.LayerNorm and an nn.Linear head. Its state_dict keys are the checkpoint's
file names, so loading is one loop.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn


class CharLM(nn.Module):
    def __init__(self, c, vocab, dropout=0.0):
        super().__init__()
        kind = c.get("positions", "window")
        marks = {"window": "", "line": "\n", "clause": "\n，。？！；"}[kind]
        self.restart = {1} | {vocab.index(m) for m in marks if m in vocab} if marks else set()
        d = c["d_model"]
        self.scale = math.sqrt(d)
        self.tok_emb = nn.Embedding(c["vocab_size"], d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, c["nhead"], c["dim_feedforward"], dropout=dropout,
                                       activation=c["activation"],
                                       layer_norm_eps=c["layer_norm_eps"], batch_first=True,
                                       norm_first=c["norm_first"])
            for _ in range(c["num_layers"]))
        self.norm = nn.LayerNorm(d, eps=c["layer_norm_eps"])
        self.lm_head = nn.Linear(d, c["vocab_size"])
        # D2L 10.6.3: P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(...).
        pos = torch.arange(c["context"], dtype=torch.float32).reshape(-1, 1)
        angle = pos / torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float32) / d)
        pe = torch.zeros(c["context"], d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
        self.register_buffer("pe", pe, persistent=False)

    def positions(self, tokens):
        """Each token's position: in the window ("window"), or 0 after a
        restart token (<eos>; "line": and a line break; "clause": and the
        clause marks too), else the previous token's + 1."""
        b, t = tokens.shape
        if not self.restart:
            return torch.arange(t).expand(b, t)
        restart = torch.zeros(self.tok_emb.num_embeddings, dtype=torch.bool)
        restart[list(self.restart)] = True
        pos = torch.zeros(b, t, dtype=torch.long)
        for i in range(1, t):
            pos[:, i] = torch.where(restart[tokens[:, i - 1]], 0, pos[:, i - 1] + 1)
        return pos

    def forward(self, tokens):  # [B, T] -> logits [B, T, V]
        t = tokens.shape[1]
        x = self.tok_emb(tokens) * self.scale + self.pe[self.positions(tokens)]
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        for layer in self.layers:
            x = layer(x, src_mask=causal)
        return self.lm_head(self.norm(x))


def load(folder):
    """The model (in eval mode) and its vocabulary (token -> string)."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    model = CharLM(config, vocab)
    state = {k: torch.from_numpy(np.load(os.path.join(folder, k + ".npy")))
             for k in model.state_dict()}
    model.load_state_dict(state)
    return model.eval(), vocab


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: %s DIR [PROMPT]" % sys.argv[0])
    model, vocab = load(sys.argv[1])
    index = {ch: i for i, ch in enumerate(vocab)}
    tokens = [1] + [index.get(ch, 0) for ch in (sys.argv[2] if len(sys.argv) == 3 else "")]
    with torch.no_grad():
        while len(tokens) < model.pe.shape[0]:
            nxt = int(model(torch.tensor([tokens]))[0, -1, 1:].argmax()) + 1  # never <unk>
            if nxt == 1:  # <eos>: the poem ends
                break
            tokens.append(nxt)
    print("".join(vocab[t] for t in tokens[1:]))


if __name__ == "__main__":
    main()
