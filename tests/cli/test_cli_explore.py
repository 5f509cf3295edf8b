"""`attn explore` writes a self-contained page that a browser opens from disk.

Without a browser: the page's Content-Security-Policy allows only its own
script and style sheet (their SHA-256 computed here from the page's text)
and forbids everything else; token labels, whatever their characters, stay
text; malformed or oversized inputs are refused with a message that names
the problem, and no page is written.

In headless Chromium (Debian's chromium, chromium-driver and
python3-selenium): the page loads from file:// with no console message and
no request but its own; hovering query i writes exactly the non-zero weights
of row i beside the keys, to 4 decimals, equal to the .npy's float32 values
(checked for every query of several heads, layers and sequences); the head
selector, the layer and sequence selectors and the all-heads toggle switch
what is shown, and no number is cut off; the matrix view's pixels are
viridis of the weights, hatched (transparent) where they are zero; the
threshold slider hides the weights below it in both views; the tooltip
names the cell and its weight; the arrow keys, Home, End and Escape move the
focused query; the address can name a view.

Only the browser part is skipped, with the reason, when the browser cannot
start, and then Meson reports the whole test as skipped; with
ATTN_TEST_REQUIRE_BROWSER set (.ci/run sets it) that is a failure instead.

Run by Meson as: python3 test_cli_explore.py PATH-TO-attn
"""
import base64
import hashlib
import json
import os
import re
import sys

import numpy as np

from clitest import SKIP, TempDir, attn_path, explorer_data, run, run_ok

rng = np.random.default_rng(14)
TOKENS = ["</script><b>x", "a&b", '"q"', "诗", "line", "🙂", "it's"] + \
         ["s1-%d" % i for i in range(7)]
KEY_TOKENS = ["k%d" % j for j in range(8)] + ["<!--"]


def softmax_weights(shape, lengths):
    """float64 softmax over the last axis with keys j >= lengths[seq] masked
    (weight exactly 0), returned as float32 as a program would save it."""
    logits = rng.normal(size=shape) * 1.5
    keys = np.arange(shape[-1])
    for b, n in enumerate(lengths):
        logits[:, b, ..., keys >= n] = -np.inf
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def page_parts(path):
    text = open(path, encoding="utf-8").read()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    assert csp, "no Content-Security-Policy"
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    return text, csp.group(1), scripts, styles


def sha256(text):
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def check_page_offline(path, w5):
    """The policy, the inline code it allows, and the data, read as text."""
    text, csp, scripts, styles = page_parts(path)
    rules = dict(r.strip().split(" ", 1) for r in csp.split(";"))
    assert rules["default-src"] == "'none'", csp
    assert len(scripts) == 1 and len(styles) == 1, (len(scripts), len(styles))
    assert rules["script-src"] == "'sha256-%s'" % sha256(scripts[0]), csp
    assert rules["style-src"] == "'sha256-%s'" % sha256(styles[0]), csp
    # Nothing on the page refers to another file or host.
    assert not re.search(r'\s(src|href|action|srcset)\s*=', text, re.I), "a reference in the page"
    assert not re.search(r"https?:|url\(", scripts[0] + styles[0]), "a URL in the code"
    # The weights: exactly the .npy's float32 values.
    meta, got = explorer_data(path)
    assert np.array_equal(got, w5), "the page's weights differ from the file's"
    return meta


def check_errors(attn, d):
    """Malformed or oversized inputs: exit 1 with a message, no page."""
    page = d.p("refused.html")
    good = softmax_weights((1, 3, 2, 4, 4), [4, 3, 4])[0]  # 3 sequences, 2 heads
    count = [0]

    def refused(array_or_path, want, *extra):
        count[0] += 1
        path = array_or_path
        if not isinstance(array_or_path, str):
            path = d.p("bad.npy")
            np.save(path, array_or_path)
        rc, _, err = run(attn, "explore", path, "-o", page, *extra)
        assert rc == 1, "exit %d for %s\n%s" % (rc, want, err)
        assert re.search(want, err), "message %r lacks %r" % (err, want)
        assert not os.path.exists(page), "a page was written for %s" % want
        return err

    nan = good.copy()
    nan[1, 1, 2, 1] = np.nan
    refused(nan, r"query 2 to key 1 \(layer 0, sequence 1, head 1\) is nan")
    refused(-good, r"is -0\.\d+: attention weights lie in \[0, 1\]")
    # A 5-D array whose last two axes are swapped (columns sum to 1, rows do not).
    wrong_axis = softmax_weights((2, 1, 2, 6, 5), [5]).swapaxes(-1, -2).copy()
    refused(wrong_axis, r"sum to [\d.]+, not 1: .*last axis, which must be the keys")
    refused(good[0, 0], r"must be \[heads, queries, keys\].*the shape is \(4, 4\)")
    refused(np.zeros((1, 2, 3, 4, 5, 6), np.float32), r"the shape is \(1, 2, 3, 4, 5, 6\)")
    refused(np.zeros((2, 0, 4), np.float32), r"no queries")
    refused(np.zeros((1, 1, 1025), np.float32), r"1025 keys: a page shows at most 1024")
    refused(good.astype(np.int32), r"must be float32 or float64, not int32")
    # Token files with the wrong count, or not UTF-8.
    with open(d.p("three.txt"), "w") as f:
        f.write("a\nb\nc\n")
    refused(good, r"3 query tokens: there must be 4 .* or 12", "--tokens", d.p("three.txt"))
    refused(good, r"3 key tokens", "--key-tokens", d.p("three.txt"))
    with open(d.p("latin1.txt"), "wb") as f:
        f.write(b"a\nb\n\xe9t\xe9\nd\n")
    refused(good, r"latin1.txt: not UTF-8 text \(at byte 4\)", "--tokens", d.p("latin1.txt"))
    refused(good, r"there is no layer 1: the weights have 1 layer", "--layers", "1")
    for layers in ["1-x", "-1", "1-", ",", "0,", "3-1", " 1", "x"]:
        rc, _, err = run(attn, "explore", d.p("bad.npy"), "-o", page, "--layers", layers)
        assert rc == 2 and "--layers: '%s' is not a list" % layers in err, (layers, rc, err)
    big_layer = "99999999999999999999"
    rc, _, err = run(attn, "explore", d.p("bad.npy"), "-o", page, "--layers", big_layer)
    assert rc == 1 and "there is no layer" in err, (rc, err)
    rc, _, err = run(attn, "explore", d.p("bad.npy"))
    assert rc == 2 and "-o PAGE.html is required" in err, (rc, err)
    # 10^8 weights: refused by their count (a sparse file: no 400 MB written).
    # Left out of the quick (Valgrind) run, where reading it takes minutes.
    if not os.environ.get("ATTN_TEST_QUICK"):
        big = np.lib.format.open_memmap(d.p("big.npy"), mode="w+", dtype=np.float32,
                                        shape=(100, 1, 1, 1000, 1000))
        del big
        refused(d.p("big.npy"), r"more than 2097152 weights, the most a page holds "
                                r"\(keep fewer layers with --layers, or slice the array\)")
        os.remove(d.p("big.npy"))
    return count[0]


def start_browser():
    """Headless Chromium through Selenium, or None and the reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        return None, "python3-selenium is not installed (%s)" % e
    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")
                     if os.path.exists(p)), None)
    driver = next((p for p in ("/usr/bin/chromedriver",) if os.path.exists(p)), None)
    if not chromium or not driver:
        return None, "chromium or chromium-driver is not installed"
    options = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(a)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=options), None
    except Exception as e:  # the browser cannot start here (no display libraries, ...)
        return None, "Chromium did not start: %s" % str(e).splitlines()[0]


class Page:
    """The loaded page, driven as a user would: the mouse, the keyboard and
    the controls."""

    def __init__(self, browser, path):
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.select import Select
        self.b, self.By, self.Keys, self.Select = browser, By, Keys, Select
        self.actions = lambda: ActionChains(browser)
        self.url = "file://" + os.path.abspath(path)
        browser.get(self.url)

    def css(self, selector):
        return self.b.find_elements(self.By.CSS_SELECTOR, selector)

    def select(self, id_, index):
        self.Select(self.b.find_element(self.By.ID, id_)).select_by_index(index)

    def hover_query(self, i):
        self.actions().move_to_element(self.css('[data-query="%d"]' % i)[0]).perform()

    def shown_weights(self):
        """{key j: [(head, text), ...]} of the numbers beside the keys that are
        rendered (have a box on the screen) and not empty: one call to the
        page, not one per element."""
        rows = self.b.execute_script(
            "return Array.from(document.querySelectorAll('[data-key] .weight'))"
            ".filter((e) => e.getClientRects().length > 0 && e.innerText !== '')"
            ".map((e) => [Number(e.closest('[data-key]').dataset.key),"
            " Number(e.dataset.head), e.innerText]);")
        out = {}
        for key, head, text in rows:
            out.setdefault(key, []).append((head, text))
        return out

    def set_threshold(self, value):
        """The slider moved to value (a drag fires 'input' events the same way)."""
        self.b.execute_script(
            "const s = document.getElementById('threshold'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input', {bubbles: true}));", str(value))

    def matrix_pixels(self, head):
        """The RGBA pixels of head's heatmap, one per cell, [queries, keys, 4]."""
        data = self.b.execute_script(
            "const c = document.querySelector('canvas.matrix[data-head=\"' + arguments[0] + "
            "'\"]'); return [c.width, c.height, Array.from(c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data)];", str(head))
        return np.array(data[2], np.uint8).reshape(data[1], data[0], 4)

    def tooltip_at(self, head, i, j):
        canvas = self.css('canvas.matrix[data-head="%d"]' % head)[0]
        r = self.b.execute_script("return arguments[0].getBoundingClientRect().toJSON();",
                                  canvas)
        n_q, n_k = int(canvas.get_attribute("height")), int(canvas.get_attribute("width"))
        dx = (j + 0.5) * r["width"] / n_k - r["width"] / 2
        dy = (i + 0.5) * r["height"] / n_q - r["height"] / 2
        self.actions().move_to_element_with_offset(canvas, round(dx), round(dy)).perform()
        tip = self.b.find_element(self.By.ID, "tooltip")
        return tip.text if tip.is_displayed() else None

    def active_query(self):
        return self.b.execute_script(
            "const e = document.activeElement; return e && e.dataset.query !== undefined ? "
            "Number(e.dataset.query) : -1;")

    def highlighted(self):
        return [int(e.get_attribute("data-query")) for e in self.css(".query.active")]

    def console(self):
        """The console's messages since the last call (reading empties the log)."""
        return self.b.get_log("browser")

    def requests(self):
        urls = []
        for entry in self.b.get_log("performance"):
            m = json.loads(entry["message"])["message"]
            if m["method"] == "Network.requestWillBeSent":
                urls.append(m["params"]["request"]["url"])
        return urls


def viridis(t):
    """matplotlib's viridis at t in [0, 1], as 0-255 RGB: its colours at 0,
    1/8, ..., 1 interpolated linearly (the page's 9-colour table)."""
    anchors = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142],
                        [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50],
                        [253, 231, 37]], np.float64)
    x = np.clip(t, 0, 1) * 8
    return np.stack([np.interp(x, np.arange(9), anchors[:, c]) for c in range(3)], axis=-1)


def expected(row, threshold=0.0):
    return {j: f"{float(x):.4f}" for j, x in enumerate(row) if x != 0 and float(x) >= threshold}


def one_head(shown):
    return {j: texts[0][1] for j, texts in shown.items() if len(texts) == 1}


def check_in_browser(page, w5, meta):
    n_layers, n_seqs, n_heads, n_q, n_k = w5.shape
    # Loaded from file://, with nothing said on the console and no request
    # but the page itself.
    console, requests = page.console(), page.requests()  # each read empties its log
    assert console == [], console
    assert requests == [page.url], requests
    # The labels: sequence 0's query tokens as text, whatever their characters.
    assert [e.text for e in page.css("[data-query]")] == TOKENS[:n_q]
    assert [e.text for e in page.css("[data-key] .label")] == KEY_TOKENS
    # Before any hover no numbers are written.
    assert page.shown_weights() == {}
    cases = [(0, 0, 0), (0, 0, 2), (1, 1, 1)]  # (layer index, sequence, head)
    for layer, seq, head in cases:
        page.select("layer", layer)
        page.select("seq", seq)
        page.select("head", head)
        if seq == 1:
            assert [e.text for e in page.css("[data-query]")] == TOKENS[n_q:2 * n_q]
        for i in range(n_q):
            page.hover_query(i)
            got, want = page.shown_weights(), expected(w5[layer, seq, head, i])
            assert len(got) == len(want) and one_head(got) == want, \
                "layer %d seq %d head %d query %d: shown %s, the .npy %s" % (
                    layer, seq, head, i, got, want)
            assert page.highlighted() == [i]
    # The head selector really switches: head 2 and head 0 show different rows.
    page.select("layer", 0)
    page.select("seq", 0)
    page.select("head", 2)
    page.hover_query(3)
    head2 = one_head(page.shown_weights())
    page.select("head", 0)
    page.hover_query(3)
    assert one_head(page.shown_weights()) == expected(w5[0, 0, 0, 3]) != head2
    # All heads of the layer: one heatmap each, and each head's numbers.
    page.b.find_element(page.By.ID, "all-heads").click()
    assert len(page.css("canvas.matrix")) == n_heads
    page.hover_query(4)
    got = page.shown_weights()
    for j in range(n_k):
        want = [(h, f"{float(w5[0, 0, h, 4, j]):.4f}") for h in range(n_heads)
                if w5[0, 0, h, 4, j] != 0]
        assert got.get(j, []) == want, (j, got.get(j), want)
    # Every number is whole on the screen: the point at each one's right edge
    # is the number itself (a clipped one would show what lies under it).
    clipped = page.b.execute_script(
        "return Array.from(document.querySelectorAll('.weight')).filter((e) => {"
        "const r = e.getBoundingClientRect();"
        "return document.elementFromPoint(r.right - 2, (r.top + r.bottom) / 2) !== e;"
        "}).map((e) => e.textContent);")
    assert clipped == [], "numbers cut off: %s" % clipped
    page.b.find_element(page.By.ID, "all-heads").click()
    assert len(page.css("canvas.matrix")) == 1

    # The matrix view: coloured cells exactly where weights are non-zero, in
    # viridis from 0 to the page's largest weight, for the head holding it.
    layer, seq, head = np.unravel_index(np.argmax(w5), w5.shape)[:3]
    page.select("layer", int(layer))
    page.select("seq", int(seq))
    page.select("head", int(head))
    pixels = page.matrix_pixels(head)
    w = w5[layer, seq, head]
    assert np.array_equal(pixels[..., 3] == 255, w != 0)
    colours = viridis(w.astype(np.float64) / float(w5.max()))
    worst = int(np.max(np.abs(pixels[..., :3][w != 0].astype(int) - colours[w != 0])))
    assert worst <= 1, "the heatmap's colours are off viridis by %d levels" % worst
    top = np.unravel_index(np.argmax(w), w.shape)
    assert tuple(pixels[top][:3]) == (253, 231, 37), pixels[top]  # viridis(1)
    page.select("layer", 0)
    page.select("seq", 0)
    page.select("head", 0)
    pixels = page.matrix_pixels(0)
    assert np.array_equal(pixels[..., 3] == 255, w5[0, 0, 0] != 0)
    # The tooltip names the cell and its weight.
    for i, j in [(0, 0), (2, 5), (n_q - 1, n_k - 1)]:
        tip = page.tooltip_at(0, i, j)
        assert tip and tip.splitlines()[0] == "query %d → key %d: %.4f" % (
            i, j, float(w5[0, 0, 0, i, j])), tip

    # The threshold slider hides the weights below it, in both views.
    t = 0.2
    page.set_threshold(t)
    pixels = page.matrix_pixels(0)
    shown = (w5[0, 0, 0] != 0) & (w5[0, 0, 0].astype(np.float64) >= t)
    assert 0 < shown.sum() < (w5[0, 0, 0] != 0).sum(), "the threshold should hide some"
    assert np.array_equal(pixels[..., 3] == 255, shown)
    for i in range(n_q):
        page.hover_query(i)
        assert one_head(page.shown_weights()) == expected(w5[0, 0, 0, i], t)
    page.set_threshold(0)

    # The keyboard: focus a query, then the arrow keys, End, Home, Escape.
    page.css('[data-query="0"]')[0].click()
    assert page.active_query() == 0
    keys = page.Keys
    for key, want in [(keys.ARROW_DOWN, 1), (keys.ARROW_DOWN, 2), (keys.ARROW_UP, 1),
                      (keys.END, n_q - 1), (keys.ARROW_DOWN, n_q - 1), (keys.HOME, 0)]:
        page.b.switch_to.active_element.send_keys(key)
        assert page.active_query() == want, (key, page.active_query(), want)
        assert page.highlighted() == [want]
        assert one_head(page.shown_weights()) == expected(w5[0, 0, 0, want])
    page.b.switch_to.active_element.send_keys(keys.ESCAPE)
    assert page.active_query() == -1 and page.highlighted() == []
    # Everything above happened without a console message.
    console = page.console()
    assert console == [], console


def check_layers_option(attn, d, browser, w5):
    """--layers 1 keeps the second layer, named by its own number; ranges and
    lists keep each layer once, in order; messages name the layer by its own
    number."""
    for layers in ["0-1", "1,0", "0,1,1", "0-0,1-1"]:
        run_ok(attn, "explore", d.p("w.npy"), "-o", d.p("both.html"), "--layers", layers)
        meta, got = explorer_data(d.p("both.html"))
        assert meta["layers"] == [0, 1] and np.array_equal(got, w5), layers
    nan = w5.copy()
    nan[1, 0, 2, 3, 4] = np.nan
    np.save(d.p("nan.npy"), nan)
    rc, _, err = run(attn, "explore", d.p("nan.npy"), "-o", d.p("nan.html"), "--layers", "1")
    assert rc == 1 and "(layer 1, sequence 0, head 2)" in err, err
    path = d.p("layer1.html")
    run_ok(attn, "explore", d.p("w.npy"), "-o", path, "--layers", "1", "--tokens",
           d.p("tokens.txt"), "--key-tokens", d.p("keys.txt"))
    meta = check_page_offline(path, w5[1:2])
    assert meta["layers"] == [1], meta["layers"]
    if browser:
        page = Page(browser, path)
        assert page.css("#layer-label")[0].is_displayed() is False
        page.hover_query(2)
        assert one_head(page.shown_weights()) == expected(w5[1, 0, 0, 2])
        console = page.console()
        assert console == [], console


def check_long_sequence(attn, d, browser):
    """400 tokens: with no query chosen the head view draws only the strongest
    2.5e6 / 400 = 6250 lines of those >= 1/256, and says so."""
    x = rng.standard_normal((1, 400, 400)) * 0.5
    w = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
    np.save(d.p("long.npy"), w.astype(np.float32))
    run_ok(attn, "explore", d.p("long.npy"), "-o", d.p("long.html"))
    total = int((w.astype(np.float32) >= np.float32(1 / 256)).sum())
    assert total > 6250, total
    page = Page(browser, d.p("long.html"))
    note = page.b.find_element(page.By.ID, "lines-note")
    assert note.is_displayed() and note.text.startswith(
        "Drawing the 6250 strongest of %d lines" % total), (note.text, total)
    page.hover_query(7)
    assert not note.is_displayed()
    assert len(page.shown_weights()) == 400


def check_address(browser, path, w5):
    """A view named in the address: page.html#layer=1&seq=1&head=2&query=3."""
    page = Page(browser, path)
    page.b.get(page.url + "#layer=1&seq=1&head=2&query=3")
    page.b.refresh()  # a new fragment alone does not reload the page
    assert page.highlighted() == [3]
    assert one_head(page.shown_weights()) == expected(w5[1, 1, 2, 3])
    page.b.get(page.url + "#all&threshold=0.25&query=1")
    page.b.refresh()
    assert len(page.css("canvas.matrix")) == w5.shape[2]
    got = page.shown_weights()
    want = {j: [(h, f"{float(w5[0, 0, h, 1, j]):.4f}") for h in range(w5.shape[2])
                if w5[0, 0, h, 1, j] != 0 and float(w5[0, 0, h, 1, j]) >= 0.25]
            for j in range(w5.shape[4])}
    assert got == {j: v for j, v in want.items() if v}, (got, want)
    console = page.console()
    assert console == [], console


def main():
    """test_cli_explore.py ATTN [--part offline|browser]: the checks of the page's
    text and of refused inputs, or those in the browser (CI reruns the
    first under every build and sanitizer, the second once)."""
    part = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--part" else "all"
    attn = attn_path()
    with TempDir() as d:
        # 2 layers, 2 sequences (valid lengths 9 and 6 over 9 keys), 4 heads,
        # 7 queries, 9 keys.
        w5 = softmax_weights((2, 2, 4, 7, 9), [9, 6])
        np.save(d.p("w.npy"), w5)
        with open(d.p("tokens.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(TOKENS) + "\n")
        with open(d.p("keys.txt"), "w", encoding="utf-8") as f:
            f.write("\r\n".join(KEY_TOKENS))  # CRLF, no final newline
        path = d.p("page.html")
        out = run_ok(attn, "explore", d.p("w.npy"), "-o", path, "--tokens", d.p("tokens.txt"),
                     "--key-tokens", d.p("keys.txt"), "--title", "<i>test</i>")
        assert out == "", out
        meta = check_page_offline(path, w5)
        assert meta["layers"] == [0, 1] and meta["shape"] == list(w5.shape)
        assert "&lt;i&gt;test&lt;/i&gt; — attention explorer" in open(path).read()
        if part in ("all", "offline"):
            n = check_errors(attn, d)
            print("offline checks: the policy, the data, %d refused inputs, 9 malformed "
                  "--layers" % n)
        if part == "offline":
            return

        browser, why = start_browser()
        if browser is None:
            # .ci/run installs the browser and sets ATTN_TEST_REQUIRE_BROWSER:
            # there a browser that does not start is a failure, not a skip.
            assert not os.environ.get("ATTN_TEST_REQUIRE_BROWSER"), why
            print("SKIP: the browser part (the checks above passed): %s" % why)
            sys.exit(SKIP)
        try:
            check_in_browser(Page(browser, path), w5, meta)
            check_layers_option(attn, d, browser, w5)
            check_address(browser, path, w5)
            check_long_sequence(attn, d, browser)
        finally:
            browser.quit()
        print("browser: hover, selectors, all heads, threshold, tooltip, keyboard, address: ok")


if __name__ == "__main__":
    main()
