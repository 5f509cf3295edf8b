"""The attn program's .npy reading and writing, at the command line:
every malformed file is refused with exit status 1 and a message that names
the file and the problem; versions 1.0, 2.0 and 3.0 are read; every supported
dtype goes in where it belongs (and is refused where it does not); outputs
are float32 files NumPy reads, with the data aligned to 64 bytes; random
corruptions never crash the program.

Run by Meson as: python3 test_cli_npy.py PATH-TO-attn
"""
import io
import os
import struct

import numpy as np

from clitest import TempDir, attn_path, run, run_ok

rng = np.random.default_rng(7)


def npy_bytes(arr, version=None, allow_pickle=False):
    f = io.BytesIO()
    if version is None:
        np.save(f, arr, allow_pickle=allow_pickle)
    else:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=allow_pickle)
    return f.getvalue()


def with_header_len(data, new_len):
    """A version 1.0 file whose header length field says new_len."""
    return data[:8] + struct.pack("<H", new_len) + data[10:]


def with_header_text(data, old, new):
    """Replaces text in the header, keeping the length field right."""
    header_len = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + header_len].replace(old, new)
    return data[:8] + struct.pack("<H", len(header)) + header + data[10 + header_len:]


GOOD = rng.standard_normal((3, 4)).astype(np.float32)
GOOD_BYTES = npy_bytes(GOOD)

# name, file contents, what the message must say
MALFORMED = [
    ("empty_file", b"", "not a .npy file"),
    ("text_file", b"just some text, not an array\n", "does not begin with"),
    ("fortran_order", npy_bytes(np.asfortranarray(GOOD)), "Fortran-order arrays are not supported"),
    ("big_endian", npy_bytes(GOOD.astype(">f4")), "big-endian data ('>f4') is not supported"),
    ("object_dtype", npy_bytes(np.array([1, "a"], dtype=object), allow_pickle=True),
     "object arrays ('|O') cannot be read"),
    ("structured_dtype", npy_bytes(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])),
     "structured dtypes"),
    ("complex_dtype", npy_bytes(GOOD.astype(np.complex64)), "dtype '<c8' is not supported"),
    ("float16_dtype", npy_bytes(GOOD.astype(np.float16)), "dtype '<f2' is not supported"),
    ("truncated_data", GOOD_BYTES[:-4], "truncated: the header's shape (3, 4) of float32 needs 48"),
    ("truncated_header", GOOD_BYTES[:40], "the header length field says 118 bytes, but only 30"),
    ("truncated_length_field", GOOD_BYTES[:9], "not a .npy file: 9 bytes"),
    ("header_length_too_big", with_header_len(GOOD_BYTES, 200),
     "the header length field says 200 bytes"),
    ("header_length_too_small", with_header_len(GOOD_BYTES, 100),
     "the header does not end with a newline where its length field (100 bytes)"),
    ("shape_larger_than_data", with_header_text(GOOD_BYTES, b"(3, 4)", b"(30, 4)"),
     "truncated: the header's shape (30, 4) of float32 needs 480 bytes of data, 48 follow"),
    ("shape_smaller_than_data", with_header_text(GOOD_BYTES, b"(3, 4)", b"(2, 4)"),
     "16 bytes follow the 32 bytes of data that the header's shape (2, 4)"),
    ("shape_overflows", with_header_text(GOOD_BYTES, b"(3, 4)", b"(4611686018427387904, 4)"),
     "is too large to address"),
    ("negative_dimension", with_header_text(GOOD_BYTES, b"(3, 4)", b"(-3, 4)"),
     "'shape' holds something other than non-negative integers"),
    ("missing_key", with_header_text(GOOD_BYTES, b"'fortran_order': False, ", b""),
     "missing key 'fortran_order'"),
    ("unknown_key", with_header_text(GOOD_BYTES, b"'fortran_order'", b"'fortran_ordre'"),
     "unexpected key 'fortran_ordre'"),
    ("not_a_dict", with_header_text(GOOD_BYTES, b"{", b"["), "not a Python dict literal"),
    ("version_4", GOOD_BYTES[:6] + b"\x04\x00" + GOOD_BYTES[8:],
     "unsupported .npy format version 4.0"),
    ("trailing_bytes", GOOD_BYTES + b"\0" * 8, "8 bytes follow the 48 bytes of data"),
]


def refused(attn, t, args, path, fragment, what):
    rc, out, err = run(attn, *args)
    assert rc == 1, "%s: exit %d, expected 1\n%s" % (what, rc, err)
    assert path in err, "%s: the message does not name %s: %s" % (what, path, err)
    assert fragment in err, "%s: message %r lacks %r" % (what, err, fragment)
    assert not os.path.exists(t.p("o.npy")), "%s: an output was written" % what
    return err


def run_args(t, q="q.npy", k="k.npy", v="v.npy", extra=()):
    return ["run", "--query", t.p(q), "--key", t.p(k), "--value", t.p(v),
            "--out", t.p("o.npy"), *extra]


def check_malformed(attn, t):
    for name, data, fragment in MALFORMED:
        bad = t.p("bad_%s.npy" % name)
        with open(bad, "wb") as f:
            f.write(data)
        err = refused(attn, t, run_args(t, k="bad_%s.npy" % name), bad, fragment, name)
        print("ok %-26s %s" % (name, err.strip()))
    refused(attn, t, run_args(t, v="missing.npy"), t.p("missing.npy"),
            "cannot open: No such file", "missing_file")
    os.mkdir(t.p("dir.npy"))
    refused(attn, t, run_args(t, q="dir.npy"), t.p("dir.npy"), "cannot read", "directory")


def check_versions(attn, t):
    for version in [(1, 0), (2, 0), (3, 0)]:
        for name, x in [("q", GOOD), ("k", GOOD), ("v", GOOD)]:
            with open(t.p(name + ".npy"), "wb") as f:
                f.write(npy_bytes(x, version=version))
        run_ok(attn, *run_args(t))
        assert np.load(t.p("o.npy")).shape == (3, 4)
        os.remove(t.p("o.npy"))


def check_dtypes(attn, t):
    """Each dtype where it belongs, refused where it does not."""
    q = rng.standard_normal((2, 3, 4))
    for name in "qkv":
        np.save(t.p(name + ".npy"), q)  # float64 queries, keys, values
    np.save(t.p("w_ref.npy"), np.zeros(1))
    keep = rng.random((3, 3)) < 0.5
    keep[:, 0] = True
    lens = np.array([2, 3])
    accepted = [("--mask", keep), ("--mask", keep.astype(np.uint8)),
                ("--valid-lens", lens.astype(np.int32)), ("--valid-lens", lens.astype(np.int64)),
                ("--bias", keep.astype(np.float32)), ("--bias", keep.astype(np.float64))]
    for opt, x in accepted:
        np.save(t.p("m.npy"), x)
        run_ok(attn, *run_args(t, extra=[opt, t.p("m.npy")]))
        os.remove(t.p("o.npy"))
    refusals = [("--mask", keep.astype(np.float32),
                 "a keep-mask must be bool or uint8, not float32"),
                ("--mask", keep.astype(np.int64), "a keep-mask must be bool or uint8, not int64"),
                ("--valid-lens", lens.astype(np.float64),
                 "valid lengths must be int64 or int32, not float64"),
                ("--valid-lens", lens.astype(np.uint8),
                 "valid lengths must be int64 or int32, not uint8"),
                ("--bias", keep, "this tensor must be float32 or float64, not bool")]
    for opt, x, fragment in refusals:
        np.save(t.p("m.npy"), x)
        refused(attn, t, run_args(t, extra=[opt, t.p("m.npy")]), t.p("m.npy"), fragment, opt)
    np.save(t.p("qi.npy"), np.ones((2, 3, 4), np.int32))
    refused(attn, t, run_args(t, q="qi.npy"), t.p("qi.npy"),
            "this tensor must be float32 or float64, not int32", "int queries")
    # attn heatmap draws any of the six dtypes.
    for dtype in [np.float32, np.float64, np.bool_, np.uint8, np.int32, np.int64]:
        np.save(t.p("h.npy"), (rng.random((4, 5)) * 3).astype(dtype))
        run_ok(attn, "heatmap", t.p("h.npy"), "-o", t.p("h.svg"))


def check_outputs(attn, t):
    """Outputs are float32 .npy files, version 1.0, data aligned to 64 bytes."""
    for name in "qkv":
        np.save(t.p(name + ".npy"), rng.standard_normal((2, 2, 5, 3)).astype(np.float32))
    run_ok(attn, *run_args(t, extra=["--weights", t.p("w.npy"), "--lse", t.p("l.npy")]))
    for name, shape in [("o.npy", (2, 2, 5, 3)), ("w.npy", (2, 2, 5, 5)), ("l.npy", (2, 2, 5))]:
        with open(t.p(name), "rb") as f:
            assert np.lib.format.read_magic(f) == (1, 0)
            header = np.lib.format.read_array_header_1_0(f)
            assert header == (shape, False, np.dtype("<f4")), (name, header)
            assert f.tell() % 64 == 0, "%s: data starts at %d" % (name, f.tell())
    os.remove(t.p("o.npy"))


def check_no_crash(attn, t):
    """Random corruptions of a valid file: refused or accepted, never a crash."""
    for name in "qkv":
        np.save(t.p(name + ".npy"), GOOD)
    # ATTN_TEST_QUICK=1 (the Valgrind run, where each trial is a Valgrind
    # process): 10 trials; fuzz/fuzz_npy.c fuzzes the reader itself.
    trials = 10 if os.environ.get("ATTN_TEST_QUICK") == "1" else 120
    for trial in range(trials):
        data = bytearray(GOOD_BYTES)
        for _ in range(rng.integers(1, 4)):
            pos = rng.integers(0, 128 if trial % 2 else len(data))
            data[pos] = rng.integers(0, 256)
        if trial % 7 == 0:
            data = data[:rng.integers(0, len(data))]
        with open(t.p("fuzz.npy"), "wb") as f:
            f.write(bytes(data))
        rc, _, err = run(attn, *run_args(t, k="fuzz.npy"))
        assert rc in (0, 1), "trial %d: exit %d (a crash?) %s" % (trial, rc, err)
        if rc == 1:
            assert t.p("fuzz.npy") in err
        if os.path.exists(t.p("o.npy")):
            os.remove(t.p("o.npy"))


def main():
    attn = attn_path()
    with TempDir() as t:
        for name in "qkv":
            np.save(t.p(name + ".npy"), GOOD)
        check_malformed(attn, t)
        check_versions(attn, t)
        check_dtypes(attn, t)
        check_outputs(attn, t)
        check_no_crash(attn, t)


if __name__ == "__main__":
    main()
