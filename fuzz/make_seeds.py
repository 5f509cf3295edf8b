#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz corpora (deterministic).

usage: fuzz/make_seeds.py [CORPUS_DIR]   (default fuzz/corpus)

  npy/  .npy files written by NumPy itself (every dtype the reader takes, the
        three format versions, a scalar, empty arrays, 3-D and 5-D shapes)
        and the refusals worth starting from: big-endian, Fortran order,
        object (pickled) data, an unsupported dtype, a truncated file, extra
        bytes after the data, a shape too large to address, a header length
        past the end, a version 4.0.
  api/  inputs of fuzz_api.c: the first byte picks the operation (0 SDPA,
        1 MHA, 2 additive, 3 Nadaraya-Watson, 4 the encoder layer, 5 the KV
        cache's operations); the rest,
        from a seeded PRNG, steer shapes, options and masks. A few per
        operation, so the fuzzer starts on every path.

The committed corpora also hold what longer local runs found (merged with
libFuzzer's -merge=1); this script only makes the starting points.
"""
import io
import os
import random
import struct
import sys

import numpy as np


def npy_bytes(arr, version=None, fortran=False):
    f = io.BytesIO()
    if fortran:
        arr = np.asfortranarray(arr)
    if version is None:
        np.save(f, arr, allow_pickle=arr.dtype == object)
    else:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=arr.dtype == object)
    return f.getvalue()


def raw_npy(header, data=b"", version=(1, 0)):
    """A .npy file with an arbitrary header dict text."""
    h = header.encode("latin1")
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(h)) + h + data


def npy_seeds():
    rng = np.random.default_rng(6)
    s = {}
    s["f4_2x3"] = npy_bytes(rng.standard_normal((2, 3)).astype("<f4"))
    s["f8_scalar"] = npy_bytes(np.float64(3.25))
    s["b1_5"] = npy_bytes(np.array([True, False, True, True, False]))
    s["u1_empty"] = npy_bytes(np.zeros((0,), np.uint8))
    s["i4_2x2x2"] = npy_bytes(np.arange(8, dtype="<i4").reshape(2, 2, 2))
    s["i8_1"] = npy_bytes(np.array([-7], dtype="<i8"))
    s["f4_5d"] = npy_bytes(np.ones((1, 2, 1, 3, 2), np.float32))
    s["f4_0x4"] = npy_bytes(np.zeros((0, 4), np.float32))
    s["f4_v2"] = npy_bytes(np.arange(6, dtype="<f4").reshape(3, 2), version=(2, 0))
    s["f8_v3"] = npy_bytes(np.arange(4, dtype="<f8"), version=(3, 0))
    s["f4_nan_inf"] = npy_bytes(np.array([np.nan, np.inf, -np.inf, -0.0], np.float32))
    s["refuse_big_endian"] = npy_bytes(np.arange(3, dtype=">f4"))
    s["refuse_fortran"] = npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3), fortran=True)
    s["refuse_object"] = npy_bytes(np.array([1, "a"], dtype=object))
    s["refuse_complex"] = npy_bytes(np.zeros(2, np.complex64))
    full = npy_bytes(np.arange(12, dtype="<f4").reshape(3, 4))
    s["refuse_truncated"] = full[:-5]
    s["refuse_extra_bytes"] = full + b"\0\0\0\0"
    s["refuse_huge_shape"] = raw_npy("{'descr': '<f4', 'fortran_order': False, "
                                     "'shape': (4611686018427387904, 4), }")
    s["refuse_negative_dim"] = raw_npy("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (-1,), }")
    s["refuse_header_past_end"] = full[:8] + struct.pack("<H", 60000) + full[10:40]
    s["refuse_version_4"] = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                                    b"\0\0\0\0", version=(4, 0))
    s["keys_reordered"] = raw_npy("{'shape': (2,), 'fortran_order': False, 'descr': '|u1'}",
                                  b"\x01\x02")
    return s


def api_seeds():
    rnd = random.Random(6)
    s = {}
    for op, name in enumerate(["sdpa", "mha", "additive", "nw", "encoder", "kv_cache"]):
        for n in range(6):
            length = [2, 8, 24, 48, 96, 160][n]
            s["%s_%d" % (name, n)] = bytes([op]) + bytes(rnd.randrange(256)
                                                         for _ in range(length))
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    for sub, seeds in (("npy", npy_seeds()), ("api", api_seeds())):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed_" + name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (d, len(seeds)))


if __name__ == "__main__":
    main()
