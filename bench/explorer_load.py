"""How big the explorer's pages are and how fast headless Chromium opens them.

For random softmax weights of a few shapes up to the page's limits
(1024 queries, 1024 keys, 2097152 weights), reports the time `attn explore`
takes to write the page, the page's size, the time Chromium takes to load it
(navigation to the end of the script: the page is drawn), and the time a
hover over a query takes to redraw (median of 9 hovers), as a user of the
page gets them: Debian's chromium, default settings, window 1400x1000.

Usage: /usr/bin/python3 bench/explorer_load.py --attn build/tools/attn
Needs chromium, chromium-driver and python3-selenium.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

SHAPES = [(1, 1, 4, 10, 10), (4, 1, 4, 88, 88), (1, 1, 8, 256, 256), (2, 1, 1, 1024, 1024)]


def softmax(shape, rng):
    x = rng.standard_normal(shape)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(a)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attn", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    b = browser()
    print("| shape [layers, seqs, heads, q, k] | weights | attn explore | page | load | hover |")
    print("|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as d:
            for shape in SHAPES:
                npy, page = os.path.join(d, "w.npy"), os.path.join(d, "w.html")
                np.save(npy, softmax(shape, rng))
                t = time.perf_counter()
                subprocess.run([args.attn, "explore", npy, "-o", page], check=True)
                write = time.perf_counter() - t
                loads = []
                for _ in range(3):
                    t = time.perf_counter()
                    b.get("file://" + page + "#r=%d" % len(loads))  # a new address each time
                    b.refresh()
                    loads.append(time.perf_counter() - t)
                hovers = []
                for i in range(9):
                    ms = b.execute_script(
                        "const e = document.querySelector('[data-query=\"' + arguments[0] +"
                        " '\"]'); const t = performance.now();"
                        " e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
                        " return performance.now() - t;", str(i * shape[3] // 9))
                    hovers.append(ms)
                print("| %s | %d | %.2f s | %.1f MB | %.2f s | %.1f ms |" % (
                    list(shape), int(np.prod(shape)), write, os.path.getsize(page) / 1e6,
                    statistics.median(loads), statistics.median(hovers)))
    finally:
        b.quit()


if __name__ == "__main__":
    main()
