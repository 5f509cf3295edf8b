#!/usr/bin/python3
"""Training throughput of UvA tutorial 6's reversal model: `attn train reverse`
against the same model trained by PyTorch 1.13 on the same machine and
threads, in sequences per second.

The PyTorch model is the tutorial's TransformerPredictor at its
hyperparameters, written with the modules libattn mirrors: one-hot input ->
nn.Linear(10, 32) -> + sinusoidal positional encoding ->
nn.TransformerEncoderLayer(32, 1, 64, dropout=0, batch_first=True) (post-norm,
ReLU) -> nn.Linear(32, 32) -> nn.LayerNorm(32) -> ReLU -> nn.Linear(32, 10);
cross-entropy, Adam(lr 5e-4) with the tutorial's cosine warm-up (50 steps),
clip_grad_norm_(5), batches of 128 from 50,000 random sequences, shuffled.
Both sides train --epochs epochs (default 1: 390 steps) and report their
training time without data generation; the script runs them alternately
--rounds times and prints the medians.

usage: /usr/bin/python3 bench/reverse_torch.py --attn build/tools/attn [--threads N]
       [--epochs 1] [--rounds 3]
"""
import argparse
import math
import os
import re
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Predictor(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_net = nn.Linear(10, 32)
        self.encoder = nn.TransformerEncoderLayer(32, 1, 64, dropout=0.0, batch_first=True)
        self.output_net = nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32), nn.ReLU(),
                                        nn.Linear(32, 10))
        pe = torch.zeros(16, 32)
        pos = torch.arange(16).unsqueeze(1).float()
        div = torch.exp(torch.arange(0, 32, 2).float() * (-math.log(10000.0) / 32))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, tokens):
        x = self.input_net(F.one_hot(tokens, 10).float()) + self.pe
        return self.output_net(self.encoder(x))


def torch_train(epochs, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    data = torch.randint(10, (50000, 16))
    model = Predictor()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    steps_per_epoch = 50000 // 128
    max_steps = steps_per_epoch * epochs

    def factor(t):
        f = 0.5 * (1 + math.cos(math.pi * t / max_steps))
        return f * t / 50 if t <= 50 else f

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(50000)
        for k in range(steps_per_epoch):
            batch = data[order[k * 128:(k + 1) * 128]]
            loss = F.cross_entropy(model(batch).reshape(-1, 10), batch.flip(1).reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
    seconds = time.perf_counter() - t0
    return max_steps * 128 / seconds, float(loss)


def attn_train(attn, epochs, threads):
    cmd = [attn, "train", "reverse", "--epochs", str(epochs), "--test-size", "16"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"([0-9]+) sequences/s", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="build/tools/attn")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    threads = a.threads or os.cpu_count()
    ours, theirs = [], []
    for _ in range(a.rounds):
        ours.append(attn_train(a.attn, a.epochs, a.threads))
        seqs, loss = torch_train(a.epochs, threads)
        theirs.append(seqs)
    o, t = statistics.median(ours), statistics.median(theirs)
    print("reversal model, %d epoch(s), %d threads, %d rounds: attn train reverse %.0f "
          "sequences/s, PyTorch %s %.0f sequences/s (last loss %.3f): libattn %.2fx"
          % (a.epochs, threads, a.rounds, o, torch.__version__, t, loss, o / t))


if __name__ == "__main__":
    main()
