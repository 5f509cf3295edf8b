"""The demo's pictures are well-formed SVG with one panel per head (or per
titled weights matrix), and they render: in the PNG of example 1's heatmap
the darkest cell is the largest attention weight.

Needs xmllint (libxml2-utils) and rsvg-convert (librsvg2-bin); skipped
without them. Run by Meson as: python3 test_cli_demo_svg.py PATH-TO-attn
"""
import re
import subprocess
import xml.etree.ElementTree as ET

import numpy as np

from clitest import TempDir, attn_path, need_program, read_png_rgb, run_ok

SVG = "{http://www.w3.org/2000/svg}"

# name: panels expected
PICTURES = {
    "uva-attention.svg": 1,
    "masked-attention.svg": 2,   # dot-product, additive
    "nw-attention.svg": 2,       # w = 1, w = 3
    "nw-regression.svg": 0,      # a line plot
    "mha-causal.svg": 4,         # one per head
    "reverse-attention.svg": 1,  # the trained reversal model's one head
    "reverse-training-loss.svg": 0,
}


def panels(path):
    root = ET.parse(path).getroot()
    return [g for g in root.iter(SVG + "g") if g.get("class") == "panel"]


def printed_matrix(out, name):
    """The rows of a tensor the demo printed under `name`."""
    block = out.split("\n" + name + "\n", 1)[1].split(")\n", 1)[0]
    return np.array([[float(x) for x in re.findall(r"-?\d+\.\d+", row)]
                     for row in block.split("\n")])


def darkest_cell(png, frame, rows, cols):
    """(row, col) of the cell whose centre pixel is darkest."""
    x, y = float(frame.get("x")), float(frame.get("y"))
    w, h = float(frame.get("width")), float(frame.get("height"))
    best, where = None, None
    for i in range(rows):
        for j in range(cols):
            px = int(x + (j + 0.5) * w / cols)
            py = int(y + (i + 0.5) * h / rows)
            lum = png[py, px].astype(float) @ [0.299, 0.587, 0.114]
            if best is None or lum < best:
                best, where = lum, (i, j)
    return where


def main():
    attn = attn_path()
    xmllint = need_program("xmllint", "libxml2-utils")
    rsvg = need_program("rsvg-convert", "librsvg2-bin")
    with TempDir() as t:
        out = run_ok(attn, "demo", "--out", t.path)
        for name, n_panels in PICTURES.items():
            path = t.p(name)
            subprocess.run([xmllint, "--noout", path], check=True)
            got = len(panels(path))
            assert got == n_panels, "%s: %d panels, expected %d" % (name, got, n_panels)

        # Example 1: render, find the darkest cell, compare with the printed weights.
        attention = printed_matrix(out, "Attention")
        assert attention.shape == (3, 3)
        subprocess.run([rsvg, t.p("uva-attention.svg"), "-o", t.p("uva.png")], check=True)
        png = read_png_rgb(t.p("uva.png"))
        frame = [r for r in panels(t.p("uva-attention.svg"))[0].iter(SVG + "rect")
                 if r.get("class") == "frame"][0]
        want = np.unravel_index(np.argmax(attention), attention.shape)
        got = darkest_cell(png, frame, 3, 3)
        assert got == tuple(int(i) for i in want), \
            "darkest cell %s, largest weight at %s" % (got, want)
        # ... and the lightest cell is the smallest weight.
        inverted = 255 - png
        lightest = darkest_cell(inverted, frame, 3, 3)
        assert lightest == tuple(int(i) for i in np.unravel_index(np.argmin(attention), (3, 3)))

        # Example 4 is causal: every cell above each panel's diagonal has weight
        # 0, the colour map's lowest colour (#fff5f0).
        subprocess.run([rsvg, t.p("mha-causal.svg"), "-o", t.p("mha.png")], check=True)
        png = read_png_rgb(t.p("mha.png"))
        for g in panels(t.p("mha-causal.svg")):
            frame = [r for r in g.iter(SVG + "rect") if r.get("class") == "frame"][0]
            x, y = float(frame.get("x")), float(frame.get("y"))
            c = float(frame.get("width")) / 10
            for i in range(10):
                for j in range(i + 1, 10):
                    px = png[int(y + (i + 0.5) * c), int(x + (j + 0.5) * c)]
                    assert tuple(px) == (0xff, 0xf5, 0xf0), (g.get("data-col"), i, j, px)

        # Example 6: the trained reversal model's map is the anti-diagonal, as
        # drawn: in each query row the darkest cell is key 15 - i.
        subprocess.run([rsvg, t.p("reverse-attention.svg"), "-o", t.p("reverse.png")],
                       check=True)
        png = read_png_rgb(t.p("reverse.png"))
        frame = [r for r in panels(t.p("reverse-attention.svg"))[0].iter(SVG + "rect")
                 if r.get("class") == "frame"][0]
        x, y = float(frame.get("x")), float(frame.get("y"))
        c = float(frame.get("width")) / 16
        for i in range(16):
            lum = [png[int(y + (i + 0.5) * c), int(x + (j + 0.5) * c)].astype(float)
                   @ [0.299, 0.587, 0.114] for j in range(16)]
            assert int(np.argmin(lum)) == 15 - i, (i, lum)


if __name__ == "__main__":
    main()
