"""The attn program's command line: --help describes every option, usage
errors exit 2, refused computations exit 1 with libattn's status string and
attn_last_error() message, shape problems name the files, and outputs are
written completely or not at all.

Run by Meson as: python3 test_cli_usage.py PATH-TO-attn
"""
import os

import numpy as np

from clitest import TempDir, attn_path, run, run_ok

RUN_OPTIONS = ["--query", "--key", "--value", "--layout", "bhsd", "bshd", "--scale", "--causal",
               "none", "top-left", "bottom-right", "--valid-lens", "--mask", "--bias", "--out",
               "--weights", "--lse", "--heatmap", "--threads", "--help"]
HEATMAP_OPTIONS = ["-o", "--xlabel", "--ylabel", "--titles", "--help"]


def check_help(attn):
    out = run_ok(attn, "--help")
    for word in ["demo", "run", "heatmap", "explore", "--version", "Exit status"]:
        assert word in out, "attn --help does not mention " + word
    out = run_ok(attn, "run", "--help")
    for word in RUN_OPTIONS:
        assert word in out, "attn run --help does not mention " + word
    out = run_ok(attn, "heatmap", "--help")
    for word in HEATMAP_OPTIONS:
        assert word in out, "attn heatmap --help does not mention " + word
    out = run_ok(attn, "explore", "--help")
    for word in ["--out", "--tokens", "--key-tokens", "--layers", "--title", "Exit status"]:
        assert word in out, "attn explore --help does not mention " + word
    assert "--out DIR" in run_ok(attn, "demo", "--help")
    assert "libattn" in run_ok(attn, "--version")


def usage_error(attn, args, fragment):
    rc, out, err = run(attn, *args)
    assert rc == 2, "%s: exit %d, expected 2\n%s" % (args, rc, err)
    assert fragment in err, "%s: %r lacks %r" % (args, err, fragment)


def check_usage_errors(attn, t):
    base = ["run", "--query", t.p("q.npy"), "--key", t.p("k.npy"), "--value", t.p("v.npy")]
    out = ["--out", t.p("o.npy")]
    usage_error(attn, [], "Usage: attn COMMAND")
    usage_error(attn, ["frobnicate"], "unknown command 'frobnicate'")
    usage_error(attn, base, "missing: --out")
    usage_error(attn, base + out + ["--frob"], "unknown option '--frob'")
    usage_error(attn, base + out + ["--layout", "bsdh"],
                "--layout: 'bsdh' is neither bhsd nor bshd")
    usage_error(attn, base + out + ["--causal", "left"], "--causal: 'left' is not none")
    usage_error(attn, base + out + ["--scale", "half"], "--scale: 'half' is not a number")
    usage_error(attn, base + out + ["--threads", "2.5"], "--threads: '2.5' is not an integer")
    usage_error(attn, base + ["--out"], "option '--out' needs a value")
    usage_error(attn, base + out + ["--out", t.p("p.npy")], "option '--out' is given twice")
    usage_error(attn, base + out + ["extra.npy"], "unexpected argument 'extra.npy'")
    usage_error(attn, ["heatmap", "-o", t.p("w.svg")], "which weights file?")
    usage_error(attn, ["heatmap", t.p("w.npy")], "-o W.svg is required")
    usage_error(attn, ["demo", "--out", ""], "the directory name is empty")
    for args in [["run"], ["heatmap"]]:
        rc, _, err = run(attn, *args)
        assert rc == 2 and "--help" in err


def refused(attn, args, fragments):
    rc, out, err = run(attn, *args)
    assert rc == 1, "%s: exit %d, expected 1\n%s" % (args, rc, err)
    for fragment in fragments:
        assert fragment in err, "%s: %r lacks %r" % (args, err, fragment)
    return err


def save(t, **arrays):
    for name, x in arrays.items():
        np.save(t.p(name + ".npy"), np.asarray(x))


def run_args(t, q="q", k="k", v="v", *extra):
    return ["run", "--query", t.p(q + ".npy"), "--key", t.p(k + ".npy"),
            "--value", t.p(v + ".npy"), "--out", t.p("o.npy"), *extra]


def check_refusals(attn, t):
    f32 = np.float32
    save(t, q=np.ones((2, 3, 4, 8), f32), k=np.ones((2, 2, 5, 8), f32),
         v=np.ones((2, 2, 5, 6), f32))
    # libattn's own refusals: the status string and attn_last_error().
    refused(attn, run_args(t), ["ATTN_ERR_SHAPE_MISMATCH",
                                "attn_sdpa_create: heads_q (3) is not a multiple of heads_kv (2)",
                                t.p("q.npy")])
    save(t, q=np.ones((2, 4, 4, 8), f32))
    refused(attn, run_args(t, "q", "k", "v", "--scale", "nan"),
            ["ATTN_ERR_INVALID_ARGUMENT", "attn_sdpa_set_scale: scale (nan) is not finite"])
    refused(attn, run_args(t, "q", "k", "v", "--threads", "5000"),
            ["ATTN_ERR_INVALID_ARGUMENT", "attn_context_set_num_threads"])
    save(t, z=np.ones((2, 2, 5, 0), f32))
    refused(attn, run_args(t, "q", "k", "z"), ["ATTN_ERR_INVALID_ARGUMENT", "dim_v (0)"])
    # Shapes the program checks itself: messages name the files.
    save(t, kb=np.ones((3, 2, 5, 8), f32))
    refused(attn, run_args(t, "q", "kb", "v"),
            ["%s and %s disagree on the batch size: 2 in (2, 4, 4, 8), 3 in (3, 2, 5, 8)"
             % (t.p("q.npy"), t.p("kb.npy"))])
    save(t, v7=np.ones((2, 2, 7, 6), f32))
    refused(attn, run_args(t, "q", "k", "v7"), ["disagree on the number of keys"])
    save(t, k3=np.ones((2, 5, 8), f32))
    refused(attn, run_args(t, "q", "k3", "v"), ["disagree on the number of dimensions"])
    save(t, q1=np.ones(8, f32))
    refused(attn, run_args(t, "q1", "k", "v"), [t.p("q1.npy"), "must be 2-D"])
    save(t, m=np.ones((3, 5), bool))
    refused(attn, run_args(t, "q", "k", "v", "--mask", t.p("m.npy")),
            [t.p("m.npy"), "does not broadcast against the weights' shape"])
    save(t, m=np.ones((4, 1), bool))
    refused(attn, run_args(t, "q", "k", "v", "--mask", t.p("m.npy")),
            ["the last dimension must be the number of keys (5)"])
    save(t, m=np.ones((1, 1, 1, 1, 5), bool))
    refused(attn, run_args(t, "q", "k", "v", "--mask", t.p("m.npy")), ["1 to 4 dimensions"])
    save(t, L=np.array([2, 9]))
    refused(attn, run_args(t, "q", "k", "v", "--valid-lens", t.p("L.npy")),
            [t.p("L.npy"), "length 9 at flat index 1 is outside [0, 5]"])
    save(t, L=np.array([2, 3, 4]))
    refused(attn, run_args(t, "q", "k", "v", "--valid-lens", t.p("L.npy")),
            ["the first dimension must be the batch size (2)"])
    save(t, L=np.ones((2, 3), np.int64))
    refused(attn, run_args(t, "q", "k", "v", "--valid-lens", t.p("L.npy")),
            ["the second dimension must be the number of queries (4)"])
    save(t, big=np.ones((1, 1, 1200, 1000), f32))
    refused(attn, run_args(t, "big", "big", "big", "--heatmap", t.p("big.svg")),
            [t.p("big.svg"), "more than the 1000000 cells"])


def check_atomic_outputs(attn, t):
    f32 = np.float32
    save(t, q=np.ones((1, 3, 4, 8), f32), k=np.ones((1, 2, 5, 8), f32),
         v=np.ones((1, 2, 5, 8), f32))
    with open(t.p("o.npy"), "wb") as f:
        f.write(b"previous contents")
    # A refused computation leaves an existing output as it was...
    refused(attn, run_args(t), ["ATTN_ERR_SHAPE_MISMATCH"])
    assert open(t.p("o.npy"), "rb").read() == b"previous contents"
    # ... an output that cannot be written leaves no trace ...
    refused(attn, run_args(t, "k", "k", "v")[:-1] + [t.p("no/such/dir/o.npy")],
            [t.p("no/such/dir/o.npy"), "cannot create a temporary file"])
    # ... and a successful run replaces the file whole.
    run_ok(attn, *run_args(t, "k", "k", "v"))
    assert np.load(t.p("o.npy")).shape == (1, 2, 5, 8)
    leftovers = [f for f in os.listdir(t.path) if ".tmp" in f]
    assert not leftovers, "temporary files left behind: %s" % leftovers


def main():
    attn = attn_path()
    with TempDir() as t:
        check_help(attn)
        check_usage_errors(attn, t)
        check_refusals(attn, t)
        check_atomic_outputs(attn, t)


if __name__ == "__main__":
    main()
