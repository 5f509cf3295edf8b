#!/usr/bin/python3
"""Training throughput of the character language model: `attn train lm`
against the same model, data, batches and optimizer in PyTorch 1.13 on the
same machine and threads, in characters (counted next-character targets)
per second.

PyTorch's model is examples/pytorch/lm_load.py's CharLM (nn.Embedding, 4
nn.TransformerEncoderLayer(128, 4, 512, dropout 0.1, GELU, pre-norm,
batch_first) with a causal mask, nn.LayerNorm, nn.Linear head), trained as
attn train lm trains: windows of at most 128 characters that start where a
poem or a line starts, batches of 32 windows cut from length-sorted groups
and padded (ignore_index for padding), cross-entropy, AdamW(lr 1e-3, weight
decay 0.1 on the weight matrices), warm-up and cosine decay,
clip_grad_norm_(1.0). Both sides train --epochs epochs on the same poems
(attn's own 95% split; here all of them, which does not change the
speed); the script alternates them --rounds times and prints the medians of
their chars/s (attn's: its progress lines', which leave the validation out).

usage: /usr/bin/python3 bench/lm_torch.py --attn build/tools/attn [--threads N]
       [--epochs 2] [--rounds 3]
"""
import argparse
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                                "pytorch"))
import lm_load  # noqa: E402

CORPUS = ["/usr/share/games/fortunes/tang300", "/usr/share/games/fortunes/song100"]
CONTEXT, BATCH = 128, 32


def poems():
    out = []
    for path in CORPUS:
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(path, encoding="utf-8").read())
        entry = []
        for line in text.split("\n") + ["%"]:
            if line.rstrip() == "%":
                lines = [l for l in entry if l.strip(" \t\u3000")]
                if lines:
                    out.append("\n".join(lines))
                entry = []
            else:
                entry.append(line)
    return out


def windows(ps, index):
    """(tokens, skip) per window, as lm_corpus.c cuts them."""
    out = []
    for p in ps:
        t = [1] + [index[c] for c in p] + [1]
        begin, covered, n = 0, 0, len(t)
        while True:
            length = min(n - 1 - begin, CONTEXT)
            out.append((t[begin:begin + length + 1], covered - begin))
            covered = begin + length
            if covered >= n - 1:
                break
            nxt = covered
            for i in range(covered, begin + 1, -1):
                if t[i - 1] == index["\n"]:
                    nxt = i
                    break
            begin = nxt
    return out


def torch_train(epochs, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    ps = poems()
    vocab = ["<unk>", "<eos>"] + sorted({c for p in ps for c in p} | {"\n"})
    index = {c: i for i, c in enumerate(vocab)}
    ws = windows(ps, index)
    config = {"vocab_size": len(vocab), "d_model": 128, "nhead": 4, "dim_feedforward": 512,
              "num_layers": 4, "context": CONTEXT, "activation": "gelu", "layer_norm_eps": 1e-5,
              "norm_first": True}
    model = lm_load.CharLM(config, vocab, dropout=0.1).train()
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=1e-3)
    per_epoch = (len(ws) + BATCH - 1) // BATCH
    total = per_epoch * epochs

    def factor(t):
        f = 0.5 * (1 + math.cos(math.pi * (t + 1) / total))
        return f * (t + 1) / 50 if t + 1 <= 50 else f

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = random.Random(42)
    targets, seconds = 0, 0.0
    for _ in range(epochs):
        order = list(range(len(ws)))
        rng.shuffle(order)
        for s in range(0, len(order), 16 * BATCH):
            order[s:s + 16 * BATCH] = sorted(order[s:s + 16 * BATCH], key=lambda i: -len(ws[i][0]))
        starts = list(range(0, len(order), BATCH))
        rng.shuffle(starts)
        t0 = time.perf_counter()
        for s in starts:
            batch = [ws[i] for i in order[s:s + BATCH]]
            length = max(len(t) - 1 for t, _ in batch)
            x = torch.full((len(batch), length), 1, dtype=torch.long)
            y = torch.full((len(batch), length), -1, dtype=torch.long)
            for k, (t, skip) in enumerate(batch):
                x[k, :len(t) - 1] = torch.tensor(t[:-1])
                y[k, skip:len(t) - 1] = torch.tensor(t[1 + skip:])
            loss = F.cross_entropy(model(x).reshape(-1, len(vocab)), y.reshape(-1),
                                   ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            targets += int((y >= 0).sum())
        seconds += time.perf_counter() - t0
    return targets / seconds, float(loss)


def attn_train(attn, epochs, threads):
    # The PyTorch side's model: D2L's window positions, no input noise (their
    # cost is the same as the defaults', a loop over the batch's tokens).
    cmd = [attn, "train", "lm", "--epochs", str(epochs), "--positions", "window",
           "--input-noise", "0"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return statistics.median(float(v) for v in re.findall(r"([0-9]+) chars/s", out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="build/tools/attn")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    threads = a.threads or os.cpu_count()
    ours, theirs = [], []
    for _ in range(a.rounds):
        ours.append(attn_train(a.attn, a.epochs, a.threads))
        cps, loss = torch_train(a.epochs, threads)
        theirs.append(cps)
    o, t = statistics.median(ours), statistics.median(theirs)
    print("character LM, %d epoch(s), %d threads, %d rounds: attn train lm %.0f chars/s, "
          "PyTorch %s %.0f chars/s (last loss %.3f): libattn %.2fx"
          % (a.epochs, threads, a.rounds, o, torch.__version__, t, loss, o / t))


if __name__ == "__main__":
    main()
