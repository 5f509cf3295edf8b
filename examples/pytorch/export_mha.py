#!/usr/bin/python3
"""Exports a torch.nn.MultiheadAttention layer, an input and its output for
examples/pytorch/mha_from_pytorch.c (see docs/pytorch.md).

    /usr/bin/python3 examples/pytorch/export_mha.py DIR

writes into DIR (created if missing):

  config.txt                  embed_dim, num_heads, batch, seq_len, bias
  in_proj_weight.bin          float32 [3·E, E]   the layer's state_dict,
  in_proj_bias.bin            float32 [3·E]      one raw file per entry
  out_proj.weight.bin         float32 [E, E]
  out_proj.bias.bin           float32 [E]
  x.bin                       float32 [B, L, E]  query = key = value
  key_padding_mask.bin        uint8   [B, L]     1 = padding (PyTorch's polarity)
  attn_mask.bin               uint8   [L, L]     1 = masked out (PyTorch's polarity)
  out.bin                     float32 [B, L, E]  PyTorch's output
  weights.bin                 float32 [B, H, L, L] average_attn_weights=False

The files are raw arrays in the machine's byte order (NumPy tofile), to be
read on the same machine. Needs Debian's python3-torch and python3-numpy.
"""
import os
import sys

import numpy as np
import torch

EMBED_DIM, NUM_HEADS, BATCH, SEQ_LEN = 32, 4, 2, 6
LENGTHS = [6, 4]  # unpadded length of each batch row (right padding)


def save(folder, name, array, dtype):
    np.ascontiguousarray(array).astype(dtype).tofile(os.path.join(folder, name + ".bin"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s DIR" % sys.argv[0])
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)

    mha = torch.nn.MultiheadAttention(EMBED_DIM, NUM_HEADS, bias=True, batch_first=True)
    mha.eval()  # inference: dropout (0 here anyway) is off
    with torch.no_grad():  # PyTorch initialises the biases to 0: make them visible
        mha.in_proj_bias.uniform_(-0.5, 0.5)
        mha.out_proj.bias.uniform_(-0.5, 0.5)

    for name, tensor in mha.state_dict().items():
        save(folder, name, tensor.numpy(), np.float32)

    x = torch.randn(BATCH, SEQ_LEN, EMBED_DIM)
    # True = padding: positions at or beyond each row's length.
    key_padding_mask = torch.arange(SEQ_LEN)[None, :] >= torch.tensor(LENGTHS)[:, None]
    # True = not allowed: the causal upper triangle.
    attn_mask = torch.triu(torch.ones(SEQ_LEN, SEQ_LEN, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        out, weights = mha(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                           need_weights=True, average_attn_weights=False)

    save(folder, "x", x.numpy(), np.float32)
    save(folder, "key_padding_mask", key_padding_mask.numpy(), np.uint8)
    save(folder, "attn_mask", attn_mask.numpy(), np.uint8)
    save(folder, "out", out.numpy(), np.float32)
    save(folder, "weights", weights.numpy(), np.float32)
    with open(os.path.join(folder, "config.txt"), "w") as fh:
        fh.write("embed_dim %d\nnum_heads %d\nbatch %d\nseq_len %d\nbias 1\n"
                 % (EMBED_DIM, NUM_HEADS, BATCH, SEQ_LEN))
    print("torch %s: wrote %s (%s)" % (torch.__version__, folder,
                                       ", ".join(sorted(os.listdir(folder)))))


if __name__ == "__main__":
    main()
