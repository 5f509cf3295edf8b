"""Helpers shared by the tests of the attn program (tests/cli/test_*.py).

Each test script is run by Meson as `python3 test_x.py ATTN` with the path of
the built program; it exits 0 on success, 77 to be skipped, anything else
(an uncaught AssertionError) on failure. Only the standard library, NumPy and
the external programs xmllint and rsvg-convert are used.
"""
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

SKIP = 77


def attn_path():
    if len(sys.argv) < 2:
        sys.exit("usage: %s PATH-TO-attn" % sys.argv[0])
    return os.path.abspath(sys.argv[1])


def run(attn, *args, cwd=None):
    """Runs the program; returns (exit status, stdout, stderr) as text.
    Arguments may be bytes (for arguments that are not UTF-8)."""
    argv = [attn] + [a if isinstance(a, bytes) else str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_ok(attn, *args, cwd=None):
    rc, out, err = run(attn, *args, cwd=cwd)
    assert rc == 0, "attn %s: exit %d\n%s%s" % (" ".join(map(str, args)), rc, out, err)
    return out


class TempDir:
    """A temporary directory, removed afterwards; p(name) is a path in it."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="attn-cli-")
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)

    def p(self, name):
        return os.path.join(self.path, name)


def need_program(name, package):
    """Skips the test (exit 77) when an external program is missing."""
    path = shutil.which(name)
    if path is None:
        print("SKIP: %s not found (Debian package %s)" % (name, package))
        sys.exit(SKIP)
    return path


def explorer_data(path):
    """The data of a page of `attn explore`: (meta, weights), the JSON of its
    attn-meta element and its attn-weights decoded (base64 of little-endian
    float32) into the array meta["shape"], [layers, sequences, heads,
    queries, keys]."""
    text = open(path, encoding="utf-8").read()
    meta = re.search(r'<script type="application/json" id="attn-meta">(.*?)</script>', text, re.S)
    data = re.search(r'<script type="application/octet-stream" id="attn-weights">(.*?)</script>',
                     text, re.S)
    assert meta and data, "%s: no attn-meta or attn-weights element" % path
    meta = json.loads(meta.group(1))
    return meta, np.frombuffer(base64.b64decode(data.group(1)), dtype="<f4").reshape(meta["shape"])


def rel_err(got, want):
    """Norm-wise relative error max|got - want| / max|want| over finite entries."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, "shape %s, expected %s" % (got.shape, want.shape)
    fin = np.isfinite(want)
    assert np.array_equal(fin, np.isfinite(got)), "non-finite entries differ"
    assert np.array_equal(np.isneginf(want), np.isneginf(got)), "-inf entries differ"
    if not fin.any():
        return 0.0
    scale = max(np.max(np.abs(want[fin])), 1e-30)
    return float(np.max(np.abs(got[fin] - want[fin])) / scale)


def sdpa_reference(q, k, v, layout="bhsd", scale=None, causal="none", lens=None, keep=None,
                   bias=None):
    """Scaled dot-product attention in float64 (D2L 10.3, Vaswani et al. eq. 1),
    with the shape rules of `attn run`: returns (out, weights, lse) shaped as the
    program writes them. Inputs are taken as float32, as the program reads them."""
    nd = q.ndim

    def to4(x):
        x = np.asarray(x, np.float32).astype(np.float64)
        if nd == 2:
            return x[None, None]
        if nd == 3:
            return x[:, None]
        return x.transpose(0, 2, 1, 3) if layout == "bshd" else x

    Q, K, V = to4(q), to4(k), to4(v)
    B, Hq, Lq, D = Q.shape
    Hkv, Lkv = K.shape[1], K.shape[2]
    K = np.repeat(K, Hq // Hkv, axis=1)  # grouped-query: head h reads kv head h // (Hq/Hkv)
    V = np.repeat(V, Hq // Hkv, axis=1)
    s = 1.0 / np.sqrt(D) if scale is None else float(np.float32(scale))
    logits = s * (Q @ K.transpose(0, 1, 3, 2))
    w_shape = {2: (Lq, Lkv), 3: (B, Lq, Lkv), 4: (B, Hq, Lq, Lkv)}[nd]

    def as4(m):  # a mask broadcast against the weights as the program writes them
        m = np.broadcast_to(m, w_shape)
        return m[None, None] if nd == 2 else m[:, None] if nd == 3 else m

    i = np.arange(Lq)[:, None]
    j = np.arange(Lkv)[None, :]
    visible = np.ones(logits.shape, bool)
    if causal == "top-left":
        visible &= j <= i
    elif causal == "bottom-right":
        visible &= j <= i + Lkv - Lq
    if lens is not None:
        lens = np.asarray(lens, np.int64)
        if lens.ndim <= 1:
            visible &= j[None, None] < lens.reshape(B)[:, None, None, None]
        else:
            visible &= j[None, None] < lens.reshape(B, 1, Lq, 1)
    if keep is not None:
        visible &= as4(np.asarray(keep) != 0)
    if bias is not None:
        logits = logits + as4(np.asarray(bias, np.float32).astype(np.float64))
    logits = np.where(visible, logits, -np.inf)
    m = logits.max(axis=-1, keepdims=True) if Lkv else np.full(logits.shape[:-1] + (1,), -np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(visible, np.exp(logits - m), 0.0)
        total = e.sum(axis=-1, keepdims=True)
        weights = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
        lse = np.where(total > 0, m + np.log(np.where(total > 0, total, 1.0)), -np.inf)[..., 0]
    out = weights @ V
    if nd == 2:
        return out[0, 0], weights[0, 0], lse[0, 0]
    if nd == 3:
        return out[:, 0], weights[:, 0], lse[:, 0]
    if layout == "bshd":
        out = out.transpose(0, 2, 1, 3)
    return out, weights, lse


def read_png_rgb(path):
    """Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what rsvg-convert
    writes) into a [height, width, 3] uint8 array; RGBA is composed on white."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG %s" % (header,)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    img = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):  # the five PNG filters (PNG spec 9.2)
            a = cur[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[x] = (line[x] + pred) & 0xFF
        img[y] = cur
        prev = cur
    img = img.reshape(height, width, channels)
    if channels == 4:
        alpha = img[..., 3:4] / 255.0
        img = img[..., :3] * alpha + 255 * (1 - alpha)
    return img[..., :3].astype(np.uint8)
