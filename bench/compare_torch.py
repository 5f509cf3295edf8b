#!/usr/bin/python3
"""libattn against PyTorch on the same shapes and thread count.

Times, with Debian's python3-torch (1.13) and the same number of threads:
  - torch.nn.functional._scaled_dot_product_attention (1.13's private SDPA;
    the public F.scaled_dot_product_attention came in 2.0),
  - torch.nn.MultiheadAttention(need_weights=False), batch_first,
and runs bench's attn-bench for libattn's figures on the same configurations
(its JSON lines), then prints the speed-up ratios and, with --plot FILE, draws
GFLOP/s against L for libattn, its GEMM floor and PyTorch (matplotlib).

usage (from the source root, after `meson setup build && meson compile -C build`):
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/compare_torch.py \
      --bench build/bench/attn-bench --threads 2 [--quick] [--plot docs/perf.svg]

OPENBLAS_NUM_THREADS=1 keeps libattn's BLAS calls single-threaded inside its
own threads (see bench/README.md); PyTorch uses its own intra-op threads
(torch.set_num_threads), not OpenBLAS's, for these operations.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def median_time(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_sdpa(cfg, runs):
    b, hq, hkv = cfg["batch"], cfg["heads_q"], cfg["heads_kv"]
    lq, lkv, d = cfg["len_q"], cfg["len_kv"], cfg["dim"]
    q = torch.randn(b, hq, lq, d)
    k = torch.randn(b, hkv, lkv, d)
    v = torch.randn(b, hkv, lkv, d)
    if hkv != hq:  # 1.13 has no GQA: repeat the kv heads, as users do
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
    causal = cfg["causal"] != 0
    with torch.inference_mode():
        return median_time(
            lambda: F._scaled_dot_product_attention(q, k, v, None, 0.0, False, causal), runs)


def torch_mha(cfg, runs):
    e = cfg["heads_q"] * cfg["dim"]
    layer = torch.nn.MultiheadAttention(e, cfg["heads_q"], batch_first=True).eval()
    x = torch.randn(cfg["batch"], cfg["len_q"], e)
    with torch.inference_mode():
        return median_time(lambda: layer(x, x, x, need_weights=False), runs)


def run_bench(bench, threads, quick, runs):
    cmd = [bench, "--threads", str(threads), "--runs", str(runs)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, d in zip(axes, (64, 128)):
        sel = [r for r in rows if r["name"].startswith(f"sdpa d{d} ") and not r["causal"]]
        xs = [r["len_q"] for r in sel]
        ax.plot(xs, [r["gflops"] for r in sel], "o-", color="tab:red", label="libattn")
        ax.plot(xs, [r["floor_gflops"] for r in sel], "s--", color="gray", label="GEMM floor")
        ax.plot(xs, [r["torch_gflops"] for r in sel], "^-", color="tab:blue",
                label="PyTorch 1.13 SDPA")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_title(f"SDPA forward, B=1, H=8, head_dim {d}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("GFLOP/s (4·B·H·L²·d)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build/bench/attn-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", help="write GFLOP/s against L to this SVG/PNG file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # 1.13 defaults to 1 here

    all_rows = run_bench(args.bench, args.threads, args.quick, args.runs)
    # Decode and the memory-only row have no PyTorch counterpart timed here;
    # they are passed through to the JSON output as attn-bench gave them.
    rows = [r for r in all_rows if "median_ms" in r and r["len_q"] > 1]
    for r in all_rows:
        if r not in rows:
            print(json.dumps(r), file=sys.stderr)
    print(f"{'configuration':28} {'libattn ms':>10} {'torch ms':>10} {'speed-up':>9}")
    for r in rows:
        t = torch_mha(r, args.runs) if r["name"].startswith("mha") else torch_sdpa(r, args.runs)
        r["torch_ms"] = t * 1e3
        r["torch_gflops"] = r["gflops"] * r["median_ms"] / r["torch_ms"]
        r["speedup"] = r["torch_ms"] / r["median_ms"]
        print(f"{r['name']:28} {r['median_ms']:10.3f} {r['torch_ms']:10.3f} {r['speedup']:8.2f}x")
        print(json.dumps(r), file=sys.stderr)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
