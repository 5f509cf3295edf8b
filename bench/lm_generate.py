#!/usr/bin/python3
"""Generation speed of `attn generate`: characters per second with the KV
cache against --no-cache (the whole prefix recomputed for every character),
for the default model (context 128) and one configured for a context of 512.

The models are trained here for one epoch (`attn train lm --epochs 1`, with
--context 512 for the second): speed does not depend on the weights. Each
run fills the whole context from an empty prompt (--greedy --ignore-eos
--max-new context − 1); the script alternates cached and uncached runs
--rounds times and prints the medians and their ratio.

usage: /usr/bin/python3 bench/lm_generate.py --attn build/tools/attn [--threads N]
       [--rounds 3]
"""
import argparse
import re
import shutil
import statistics
import subprocess
import tempfile


def speed(attn, model, new, threads, cache):
    cmd = [attn, "generate", "--model", model, "--greedy", "--ignore-eos", "--max-new",
           str(new)] + ([] if cache else ["--no-cache"])
    if threads:
        cmd += ["--threads", str(threads)]
    err = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    m = re.search(r"([0-9]+) characters in [0-9.]+ s \(([0-9.]+) per second.*first character "
                  r"([0-9.]+) ms", err)
    assert int(m.group(1)) == new, err
    return float(m.group(2)), float(m.group(3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="build/tools/attn")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lm-generate-")
    try:
        print("context | cached chars/s | first char (ms) | no-cache chars/s | ratio")
        for context in (128, 512):
            model = "%s/lm%d" % (tmp, context)
            subprocess.run([a.attn, "train", "lm", "--epochs", "1", "--context", str(context),
                            "--out", model], check=True, capture_output=True)
            cached, uncached, first = [], [], []
            for _ in range(a.rounds):
                s, f = speed(a.attn, model, context - 1, a.threads, True)
                cached.append(s), first.append(f)
                uncached.append(speed(a.attn, model, context - 1, a.threads, False)[0])
            c, u = statistics.median(cached), statistics.median(uncached)
            print("%7d | %14.0f | %15.1f | %16.1f | %.1fx"
                  % (context, c, statistics.median(first), u, c / u))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
