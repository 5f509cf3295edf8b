"""`attn heatmap` is D2L's show_heatmaps: 2-D weights make one panel, 3-D a
row, 4-D a grid; labels default to Keys/Queries; titles go per column or per
panel; one colour bar serves all panels; the largest value gets the darkest
'Reds' colour and the smallest the lightest; NaN cells stay blank; any title
text (markup characters, control characters, bytes that are not UTF-8)
still makes well-formed XML. `attn run --heatmap` draws one panel per batch
row and head.

Run by Meson as: python3 test_cli_heatmap.py PATH-TO-attn
"""
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np

from clitest import TempDir, attn_path, run, run_ok

SVG = "{http://www.w3.org/2000/svg}"
LIGHTEST, DARKEST = "#fff5f0", "#67000d"
rng = np.random.default_rng(11)


def parse(path):
    """Parses the SVG (strict XML) and checks it with xmllint when present."""
    if shutil.which("xmllint"):
        subprocess.run(["xmllint", "--noout", path], check=True)
    return ET.parse(path).getroot()


def panels(root):
    return [g for g in root.iter(SVG + "g") if g.get("class") == "panel"]


def frame(panel):
    r = [r for r in panel.iter(SVG + "rect") if r.get("class") == "frame"][0]
    return [float(r.get(a)) for a in ("x", "y", "width", "height")]


def texts(root):
    return [t.text for t in root.iter(SVG + "text")]


def fill_at(panel, i, j, rows, cols):
    """The fill of the cell rectangle covering cell (i, j), or None."""
    x, y, w, h = frame(panel)
    cx, cy = x + (j + 0.5) * w / cols, y + (i + 0.5) * h / rows
    for r in panel.iter(SVG + "rect"):
        if r.get("class") == "frame":
            continue
        rx, ry, rw, rh = (float(r.get(a)) for a in ("x", "y", "width", "height"))
        if rx <= cx < rx + rw and ry <= cy < ry + rh:
            return r.get("fill")
    return None


def heatmap(attn, t, x, *args):
    np.save(t.p("w.npy"), x)
    run_ok(attn, "heatmap", t.p("w.npy"), "-o", t.p("w.svg"), *args)
    return parse(t.p("w.svg"))


def check_grids(attn, t):
    root = heatmap(attn, t, rng.random((4, 6)))
    assert len(panels(root)) == 1
    assert "Keys" in texts(root) and "Queries" in texts(root)
    root = heatmap(attn, t, rng.random((3, 4, 6)), "--xlabel", "Sorted training inputs",
                   "--ylabel", "Sorted testing inputs")
    ps = panels(root)
    assert len(ps) == 3 and {p.get("data-row") for p in ps} == {"0"}
    assert len({frame(p)[1] for p in ps}) == 1, "one row of panels"
    assert texts(root).count("Sorted training inputs") == 3  # under every bottom panel
    assert texts(root).count("Sorted testing inputs") == 1   # beside the first column
    root = heatmap(attn, t, rng.random((2, 3, 5, 5)), "--titles", "a,b,c")
    ps = panels(root)
    assert len(ps) == 6
    assert len({frame(p)[0] for p in ps}) == 3 and len({frame(p)[1] for p in ps}) == 2
    assert texts(root).count("a") == 2, "a column title appears above each row"
    root = heatmap(attn, t, rng.random((2, 3, 5, 5)), "--titles", "1,2,3,4,5,6")
    assert all(str(k) in texts(root) for k in range(1, 7))
    bars = [r for r in root.iter(SVG + "rect") if r.get("class") == "colorbar"]
    assert len(bars) == 1, "one shared colour bar"


def check_colours(attn, t):
    x = rng.random((2, 7, 9))
    x[1, 3, 4] = 2.0    # the largest value overall
    x[0, 6, 0] = -1.0   # the smallest
    x[0, 2, 2] = np.nan
    ps = panels(heatmap(attn, t, x))
    assert fill_at(ps[1], 3, 4, 7, 9) == DARKEST
    assert fill_at(ps[0], 6, 0, 7, 9) == LIGHTEST
    assert fill_at(ps[0], 2, 2, 7, 9) is None, "a NaN cell is left blank"
    assert fill_at(ps[0], 2, 3, 7, 9) not in (None, LIGHTEST, DARKEST)
    # A single value everywhere: all cells the lowest colour, no division by zero.
    ps = panels(heatmap(attn, t, np.full((3, 3), 0.25)))
    assert fill_at(ps[0], 1, 1, 3, 3) == LIGHTEST


def check_escaping(attn, t):
    title = b"<b>&amp; 'q' \"k\" \x01\x1b \xff\xfe caf\xc3\xa9"
    root = heatmap(attn, t, rng.random((2, 3, 3)), "--titles", title + b",x<y",
                   "--xlabel", "A & B", "--ylabel", "</text>")
    words = texts(root)
    assert "A & B" in words and "</text>" in words and "x<y" in words
    got = [w for w in words if w and w.startswith("<b>")][0]
    assert got == "<b>&amp; 'q' \"k\"  \ufffd\ufffd caf\u00e9", repr(got)


def check_errors(attn, t):
    for x, fragment in [(np.ones(5), "weights must be 2-D, 3-D or 4-D; the shape is (5,)"),
                        (np.ones((1, 1, 1, 1, 1)), "weights must be 2-D, 3-D or 4-D"),
                        (np.ones((0, 3)), "nothing to draw"),
                        (np.ones((2, 2, 2)), "3 titles for 1 x 2 panels")]:
        np.save(t.p("bad.npy"), x)
        rc, _, err = run(attn, "heatmap", t.p("bad.npy"), "-o", t.p("bad.svg"), "--titles", "a,b,c")
        assert rc == 1 and fragment in err and t.p("bad.npy") in err, (rc, err)


def check_run_heatmap(attn, t):
    for name, shape in [("q", (2, 3, 4, 8)), ("k", (2, 3, 6, 8)), ("v", (2, 3, 6, 8))]:
        np.save(t.p(name + ".npy"), rng.standard_normal(shape).astype(np.float32))
    run_ok(attn, "run", "--query", t.p("q.npy"), "--key", t.p("k.npy"), "--value", t.p("v.npy"),
           "--out", t.p("o.npy"), "--causal", "bottom-right", "--heatmap", t.p("run.svg"))
    ps = panels(parse(t.p("run.svg")))
    assert len(ps) == 6, "one panel per (batch row, head)"
    # Bottom-right causal with 4 queries and 6 keys: query 0 sees keys 0..2.
    assert fill_at(ps[0], 0, 5, 4, 6) == LIGHTEST


def main():
    attn = attn_path()
    with TempDir() as t:
        check_grids(attn, t)
        check_colours(attn, t)
        check_escaping(attn, t)
        check_errors(attn, t)
        check_run_heatmap(attn, t)


if __name__ == "__main__":
    main()
