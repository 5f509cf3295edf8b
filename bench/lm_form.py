#!/usr/bin/python3
"""The form of the poems a language model of `attn train lm` writes: the
share of clauses of 5 or 7 characters that it samples after a held-out
poem's first line (issue 20's measure; the corpus's own share is about 95%).
Prompts holding a character the model's vocabulary lacks are skipped.

    /usr/bin/python3 bench/lm_form.py ATTN MODEL_DIR [--samples N] [--temperature T]

For every poem of MODEL_DIR/heldout.txt (written by `attn train lm --out`),
the prompt is the poem up to the end of its first verse line (its title,
its author and that line), and `attn generate` samples N continuations
(seeds 1 .. N, temperature 0.8 by default) until the end-of-poem token. A
clause is the text between two of ，。？！； on a generated verse line (not a
title line 《...》 or 题目:《...》, or an author line 作者...), counted when a mark closes it.
Prints the share for the samples and for the held-out poems themselves.
"""
import argparse
import json
import re
import subprocess

MARKS = "，。？！；"
HEADS = ("《", "作者", "题目")  # title and author lines (tang300; song100: 题目:《...》, 作者:...)


def clauses(lines):
    """The closed clauses of verse lines."""
    out = []
    for line in lines:
        if line.startswith(HEADS):
            continue
        for part in re.findall("[^%s]*[%s]" % (MARKS, MARKS), line):
            if len(part) > 1:
                out.append(part[:-1])
    return out


def share(cl):
    return sum(len(c) in (5, 7) for c in cl) / len(cl) if cl else float("nan")


def read_poems(path):
    with open(path, encoding="utf-8") as f:
        return [p.strip("\n") for p in f.read().split("\n%\n") if p.strip("\n")]


def prompt_of(poem):
    """The poem through its first verse line (title and author lines first)."""
    lines = poem.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith(HEADS):
            return "\n".join(lines[:i + 1]) + "\n"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("attn")
    ap.add_argument("model")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.8)
    a = ap.parse_args()
    poems = read_poems(a.model + "/heldout.txt")
    with open(a.model + "/vocab.json", encoding="utf-8") as f:
        vocab = set(json.load(f))
    prompts = [p for p in map(prompt_of, poems) if p]
    known = [p for p in prompts if all(ch in vocab for ch in p)]
    if len(known) < len(prompts):
        print("skipped %d prompts with characters the vocabulary lacks"
              % (len(prompts) - len(known)))
    prompts = known
    generated, own = [], []
    for poem in poems:
        own += clauses(poem.split("\n")[1:])
    for seed in range(1, a.samples + 1):
        for i, prompt in enumerate(prompts):
            args = [a.attn, "generate", "--model", a.model, "--temperature", str(a.temperature),
                    "--seed", str(seed * 1000 + i), "--prompt", prompt]
            p = subprocess.run(args, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(p.stderr)
            assert p.stdout.startswith(prompt), (prompt, p.stdout)
            generated += clauses(p.stdout[len(prompt):].split("\n"))
    print("clauses of 5 or 7 characters: %.1f%% of %d sampled (temperature %g, %d prompts x "
          "%d); the held-out poems' own: %.1f%% of %d"
          % (100 * share(generated), len(generated), a.temperature, len(prompts), a.samples,
             100 * share(own), len(own)))


if __name__ == "__main__":
    main()
