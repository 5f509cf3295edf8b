#!/usr/bin/python3
"""Loads a checkpoint of `attn train lm` into the equivalent torch.nn model
and continues a prompt greedily (see docs/text-generation.md).

    /usr/bin/python3 examples/pytorch/lm_load.py DIR [PROMPT]

The model (PyTorch 1.13; Debian's python3-torch and python3-numpy): token
embedding times sqrt(d_model) plus D2L's sinusoidal positional encoding (of
the position in the window, or with "positions": "line", "clause" or "grid"
of the place in the line or clause), num_layers causal
nn.TransformerEncoderLayer (batch_first), a final nn.LayerNorm and an
nn.Linear head. Its state_dict keys are the checkpoint's file names, so
loading is one loop.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn


def sinusoids(length, d):
    pos = torch.arange(length, dtype=torch.float32).reshape(-1, 1)
    angle = pos / torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(length, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


class CharLM(nn.Module):
    def __init__(self, c, vocab, dropout=0.0):
        super().__init__()
        self.kind = c.get("positions", "window")
        lines = {1} | ({vocab.index("\n")} if self.kind != "window" else set())
        self.marks = {vocab.index(m) for m in "，。？！；" if m in vocab} \
            if self.kind in ("clause", "grid") else set()
        self.lines_mask = torch.zeros(len(vocab), dtype=torch.bool)
        self.lines_mask[list(lines)] = True
        self.marks_mask = torch.zeros(len(vocab), dtype=torch.bool)
        self.marks_mask[list(self.marks)] = True
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
        self.register_buffer("pe", sinusoids(c["context"], d), persistent=False)
        self.register_buffer("pe_half", sinusoids(c["context"], d // 2), persistent=False)

    def positions(self, tokens):
        """Each token's position: its index in the window ("window"); or, after
        each <eos> or line break restarting at 0, its place in the line
        ("line"), in the clause (after each clause mark too: "clause"), or
        for "grid" the pair (clause's index in the line, place in the clause)
        as index * context + place."""
        b, t = tokens.shape
        if self.kind == "window":
            return torch.arange(t).expand(b, t)
        ctx = self.pe.shape[0]
        pos = torch.zeros(b, t, dtype=torch.long)
        for i in range(1, t):
            prev, p = tokens[:, i - 1], pos[:, i - 1]
            nxt = torch.where(p % ctx + 1 < ctx, p + 1, p)
            if self.marks:
                clause = torch.clamp(p // ctx + 1, max=ctx - 1) * ctx if self.kind == "grid" \
                    else torch.zeros_like(p)
                nxt = torch.where(self.marks_mask[prev], clause, nxt)
            pos[:, i] = torch.where(self.lines_mask[prev], 0, nxt)
        return pos

    def encoding(self, pos):
        if self.kind != "grid":
            return self.pe[pos]
        ctx = self.pe.shape[0]
        return torch.cat([self.pe_half[pos % ctx], self.pe_half[pos // ctx]], dim=-1)

    def forward(self, tokens):  # [B, T] -> logits [B, T, V]
        t = tokens.shape[1]
        x = self.tok_emb(tokens) * self.scale + self.encoding(self.positions(tokens))
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
