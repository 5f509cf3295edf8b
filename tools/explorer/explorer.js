/*
 * explorer.js — the attention explorer of `attn explore` (tools/explore_cmd.c).
 *
 * The page carries its data in two inert script elements written by
 * tools/explorer_page.c: "attn-meta" (JSON: the shape [layers, sequences,
 * heads, queries, keys], the layers' numbers, the token labels, the largest
 * weight) and "attn-weights" (the weights as little-endian float32, base64, in
 * that shape's row-major order). This script draws two views of one layer and
 * one sequence:
 *
 *  - the head view, as bertviz draws it: query tokens on the left, key tokens
 *    on the right, one line per weight whose opacity is the weight. Hovering
 *    or focusing a query token keeps only its lines and writes its weights
 *    beside the keys, to 4 decimals;
 *  - the matrix view, D2L's show_heatmaps: one heatmap per shown head, rows
 *    the queries and columns the keys, with a colour bar and a tooltip
 *    "query i → key j: w".
 *
 * Controls: layer, sequence and head selectors, a toggle between one head and
 * all heads of the layer, and a threshold slider that hides every weight
 * below it (zero weights, the masked ones, are always hidden). The arrow keys,
 * Home and End move the focused query; Escape shows all queries again. The
 * address may name a view: page.html#layer=1&head=2&query=5 (readAddress).
 *
 * Other programs may rely on: each query token is an element with
 * data-query="i" (0-based), each key token data-key="j" (../shared/API.md).
 * The page makes no request to any host; its Content-Security-Policy forbids
 * it. Plain JavaScript, no framework, no build step.
 */
'use strict';

(function () {
    /* Okabe & Ito's palette, distinguishable with the common colour-vision
     * deficiencies: one colour per head when all heads are shown. */
    const HEAD_COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7',
                          '#56B4E9', '#D55E00', '#F0E442', '#000000'];
    /* matplotlib's viridis at 0, 1/8, ..., 1: perceptually uniform, readable
     * in grey and by colour-blind readers; interpolated linearly between. */
    const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
    const ROW = 20;            /* px per token row; the CSS's --row */
    const LINES_WIDTH = 200;   /* px between the two token columns */
    const MATRIX_PX = 360;     /* the side of one head's heatmap, about */
    const MATRIX_PX_ALL = 220; /* ... when all heads of the layer are shown */

    const byId = (id) => document.getElementById(id);
    const range = (n) => Array.from({length: n}, (_, i) => i);

    const meta = JSON.parse(byId('attn-meta').textContent);
    const [nLayers, nSeqs, nHeads, nQ, nK] = meta.shape;
    const weights = decodeFloat32(byId('attn-weights').textContent,
                                  nLayers * nSeqs * nHeads * nQ * nK);
    const scaleMax = meta.max > 0 ? meta.max : 1;

    const state = {layer: 0, seq: 0, head: 0, allHeads: false, threshold: 0, active: -1};

    /* base64 of little-endian float32s into a Float32Array: the bytes as they
     * are on a little-endian machine (every browser's, in practice), read
     * through a DataView otherwise. */
    function decodeFloat32(text, count) {
        const chars = atob(text.replace(/\s+/g, ''));
        if (chars.length !== 4 * count)
            throw new Error('attn-weights holds ' + chars.length + ' bytes, not ' + 4 * count);
        const bytes = new Uint8Array(chars.length);
        for (let i = 0; i < chars.length; i++)
            bytes[i] = chars.charCodeAt(i);
        if (new Uint8Array(new Uint32Array([1]).buffer)[0] === 1)
            return new Float32Array(bytes.buffer);
        const view = new DataView(bytes.buffer), out = new Float32Array(count);
        for (let i = 0; i < count; i++)
            out[i] = view.getFloat32(4 * i, true);
        return out;
    }

    /* The weights of query i over all keys, in head h of the shown layer and
     * sequence (a view, not a copy). */
    function weightRow(h, i) {
        const start = (((state.layer * nSeqs + state.seq) * nHeads + h) * nQ + i) * nK;
        return weights.subarray(start, start + nK);
    }

    function shownHeads() {
        return state.allHeads ? range(nHeads) : [state.head];
    }

    function headColour(h) {
        return state.allHeads ? HEAD_COLOURS[h % HEAD_COLOURS.length] : HEAD_COLOURS[0];
    }

    /* Zero weights (masked keys) are never drawn; the slider hides the rest
     * below its value. */
    function isShown(w) {
        return w !== 0 && w >= state.threshold;
    }

    function labels(lists, n) {
        if (!lists)
            return range(n).map(String);
        return lists.length === 1 ? lists[0] : lists[state.seq];
    }

    function viridis(t) {
        const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
        const k = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - k;
        return VIRIDIS[k].map((c, m) => Math.round(c + f * (VIRIDIS[k + 1][m] - c)));
    }

    /* viridis at 1024 levels, for the heatmaps' million cells: within half
     * a level of viridis(t) before rounding. */
    const VIRIDIS_LEVELS = 1024;
    const viridisTable = (() => {
        const table = new Uint8Array(3 * VIRIDIS_LEVELS);
        for (let k = 0; k < VIRIDIS_LEVELS; k++)
            table.set(viridis(k / (VIRIDIS_LEVELS - 1)), 3 * k);
        return table;
    })();

    /* ---- controls ---- */

    function fillSelect(select, names) {
        select.textContent = '';
        names.forEach((name, i) => select.add(new Option(name, String(i))));
    }

    function buildControls() {
        fillSelect(byId('layer'), meta.layers.map((l) => 'layer ' + l));
        fillSelect(byId('seq'), range(nSeqs).map((b) => 'sequence ' + b));
        fillSelect(byId('head'), range(nHeads).map((h) => 'head ' + h));
        byId('layer-label').hidden = nLayers === 1;
        byId('seq-label').hidden = nSeqs === 1;
        byId('all-heads-label').hidden = nHeads === 1;
        const slider = byId('threshold');
        slider.max = String(Math.ceil(scaleMax * 1000) / 1000);
        byId('layer').addEventListener('change', (e) => {
            state.layer = Number(e.target.value);
            redraw();
        });
        byId('seq').addEventListener('change', (e) => {
            state.seq = Number(e.target.value);
            buildHeadView(); /* the sequences may have different tokens */
            redraw();
        });
        byId('head').addEventListener('change', (e) => {
            state.head = Number(e.target.value);
            redraw();
        });
        byId('all-heads').addEventListener('change', (e) => {
            state.allHeads = e.target.checked;
            byId('head').disabled = state.allHeads;
            redraw();
        });
        slider.addEventListener('input', () => {
            state.threshold = Number(slider.value);
            byId('threshold-value').textContent = state.threshold.toFixed(3);
            redraw();
        });
    }

    /* ---- the head view ---- */

    function queryElements() {
        return byId('queries').children;
    }

    function buildHeadView() {
        const queries = byId('queries'), keys = byId('keys');
        queries.textContent = '';
        keys.textContent = '';
        const qt = labels(meta.queryTokens, nQ), kt = labels(meta.keyTokens, nK);
        for (let i = 0; i < nQ; i++) {
            const el = document.createElement('div');
            el.className = 'token query';
            el.dataset.query = String(i);
            el.tabIndex = i === Math.max(state.active, 0) ? 0 : -1;
            el.textContent = qt[i];
            el.title = 'query ' + i + ': ' + qt[i];
            el.setAttribute('role', 'button');
            el.setAttribute('aria-label', 'query ' + i + ' ' + qt[i]);
            queries.appendChild(el);
        }
        for (let j = 0; j < nK; j++) {
            const el = document.createElement('div');
            el.className = 'token key';
            el.dataset.key = String(j);
            el.title = 'key ' + j + ': ' + kt[j];
            const label = document.createElement('span');
            label.className = 'label';
            label.textContent = kt[j];
            const ws = document.createElement('span');
            ws.className = 'weights';
            ws.setAttribute('aria-live', 'off');
            el.append(label, ws);
            keys.appendChild(el);
        }
        /* Sharp on HiDPI screens, but never taller than the 32767 pixels
         * every browser draws in one canvas (1024 rows of 20 px at a ratio
         * of 2 would be 40960). */
        const height = Math.max(nQ, nK) * ROW;
        const canvas = byId('lines');
        const dpr = Math.min(window.devicePixelRatio || 1, 32767 / height);
        canvas.width = Math.round(LINES_WIDTH * dpr);
        canvas.height = Math.round(height * dpr);
        canvas.style.width = LINES_WIDTH + 'px';
        canvas.style.height = height + 'px';
    }

    /* The lines of head h as [query, key, weight]: the active query's, or
     * with none active the strongest maxLines of all. A browser rasterises
     * each line on its own, at a cost that grows with its length: 10,000
     * lines between 1024 tokens took 5.5 s to appear (bench/explorer_load.py),
     * so long sequences get fewer, about 2.5 million pixels of height in
     * all. A line below 1/256 is left out: it is invisible on its own. */
    const maxLines = Math.round(2.5e6 / Math.max(nQ, nK, 250));
    function linesToDraw(h) {
        const rows = state.active >= 0 ? [state.active] : range(nQ), lines = [];
        for (const i of rows) {
            const row = weightRow(h, i);
            for (let j = 0; j < nK; j++)
                if (isShown(row[j]) && row[j] >= 1 / 256)
                    lines.push([i, j, row[j]]);
        }
        lines.total = lines.length;
        if (lines.length <= maxLines)
            return lines;
        const strongest = lines.sort((a, b) => b[2] - a[2]).slice(0, maxLines);
        strongest.total = lines.length;
        return strongest;
    }

    function drawLines() {
        const canvas = byId('lines'), ctx = canvas.getContext('2d');
        const dpr = canvas.width / LINES_WIDTH;
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.clearRect(0, 0, LINES_WIDTH, canvas.height / dpr);
        ctx.lineWidth = state.active >= 0 ? 2 : 1.5;
        let drawn = 0, total = 0;
        for (const h of shownHeads()) {
            ctx.strokeStyle = headColour(h);
            const lines = linesToDraw(h);
            drawn += lines.length;
            total += lines.total;
            for (const [i, j, w] of lines) {
                ctx.globalAlpha = Math.min(w, 1);
                ctx.beginPath();
                ctx.moveTo(0, (i + 0.5) * ROW);
                ctx.lineTo(LINES_WIDTH, (j + 0.5) * ROW);
                ctx.stroke();
            }
        }
        ctx.globalAlpha = 1;
        const note = byId('lines-note');
        note.hidden = drawn === total;
        note.textContent = 'Drawing the ' + drawn + ' strongest of ' + total + ' lines: hover ' +
                           'over a query for all of its own.';
    }

    /* The active query's shown weights as numbers beside the keys. */
    function writeWeights() {
        const keys = byId('keys').children;
        for (let j = 0; j < nK; j++) {
            const box = keys[j].lastChild;
            box.textContent = '';
            if (state.active < 0)
                continue;
            for (const h of shownHeads()) {
                const w = weightRow(h, state.active)[j];
                if (!isShown(w))
                    continue;
                const span = document.createElement('span');
                span.className = 'weight';
                span.dataset.head = String(h);
                span.textContent = w.toFixed(4);
                if (state.allHeads)
                    span.style.borderBottomColor = headColour(h);
                box.appendChild(span);
            }
        }
    }

    function setActive(i) {
        state.active = i;
        const qs = queryElements();
        for (let k = 0; k < qs.length; k++)
            qs[k].classList.toggle('active', k === i);
        drawLines();
        writeWeights();
        placeRowMarkers();
    }

    /* The focused query token, or -1. */
    function focusedQuery() {
        const el = document.activeElement;
        return el && el.dataset && el.dataset.query !== undefined ? Number(el.dataset.query) : -1;
    }

    /* Roving focus: only the focused query is in the tab order. */
    function focusQuery(i) {
        const qs = queryElements();
        for (let k = 0; k < qs.length; k++)
            qs[k].tabIndex = k === i ? 0 : -1;
        qs[i].focus();
    }

    function onQueryKey(e) {
        const i = focusedQuery();
        if (i < 0)
            return;
        const moves = {ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: nQ - 1,
                       PageDown: i + 10, PageUp: i - 10};
        if (e.key in moves) {
            focusQuery(Math.min(Math.max(moves[e.key], 0), nQ - 1));
            e.preventDefault();
        } else if (e.key === 'Escape') {
            e.target.blur();
            setActive(-1);
        }
    }

    function bindHeadView() {
        const queries = byId('queries');
        const queryOf = (e) => {
            const el = e.target.closest('[data-query]');
            return el ? Number(el.dataset.query) : -1;
        };
        queries.addEventListener('mouseover', (e) => {
            const i = queryOf(e);
            if (i >= 0 && i !== state.active)
                setActive(i);
        });
        queries.addEventListener('focusin', (e) => {
            const i = queryOf(e);
            if (i >= 0)
                setActive(i);
        });
        queries.addEventListener('click', (e) => {
            const i = queryOf(e);
            if (i >= 0)
                focusQuery(i);
        });
        queries.addEventListener('keydown', onQueryKey);
        /* Leaving the view returns to the focused query, or to all of them. */
        byId('head-grid').addEventListener('mouseleave', () => setActive(focusedQuery()));
    }

    /* ---- the matrix view ---- */

    function cellSize() {
        const side = state.allHeads ? MATRIX_PX_ALL : MATRIX_PX;
        return Math.max(1, Math.min(24, Math.floor(side / Math.max(nQ, nK))));
    }

    function drawMatrix(canvas, h) {
        const ctx = canvas.getContext('2d');
        const img = ctx.createImageData(nK, nQ), px = img.data;
        const levels = (VIRIDIS_LEVELS - 1) / scaleMax;
        for (let i = 0; i < nQ; i++) {
            const row = weightRow(h, i);
            for (let j = 0; j < nK; j++) {
                if (!isShown(row[j]))
                    continue; /* transparent: the hatched background shows */
                const c = 3 * Math.min(Math.round(row[j] * levels), VIRIDIS_LEVELS - 1);
                const p = 4 * (i * nK + j);
                px[p] = viridisTable[c];
                px[p + 1] = viridisTable[c + 1];
                px[p + 2] = viridisTable[c + 2];
                px[p + 3] = 255;
            }
        }
        ctx.putImageData(img, 0, 0);
    }

    function buildMatrices() {
        const box = byId('matrices'), cell = cellSize();
        box.textContent = '';
        for (const h of shownHeads()) {
            const figure = document.createElement('figure');
            const caption = document.createElement('figcaption');
            caption.textContent = 'layer ' + meta.layers[state.layer] + ', head ' + h;
            if (state.allHeads)
                caption.style.color = headColour(h);
            const frame = document.createElement('div');
            frame.className = 'matrix-box';
            const canvas = document.createElement('canvas');
            canvas.className = 'matrix';
            canvas.dataset.head = String(h);
            canvas.width = nK;
            canvas.height = nQ;
            canvas.style.width = nK * cell + 'px';
            canvas.style.height = nQ * cell + 'px';
            canvas.addEventListener('mousemove', showTooltip);
            canvas.addEventListener('mouseleave', () => { byId('tooltip').hidden = true; });
            canvas.addEventListener('click', (e) => focusQuery(cellAt(e).i));
            const marker = document.createElement('div');
            marker.className = 'row-marker';
            marker.style.height = cell + 'px';
            marker.hidden = true;
            frame.append(canvas, marker);
            figure.append(caption, withAxisLabels(frame, cell));
            box.appendChild(figure);
            drawMatrix(canvas, h);
        }
        placeRowMarkers();
    }

    /* The heatmap with its query tokens to the left and its key tokens below,
     * when the cells are tall enough to read them. */
    function withAxisLabels(frame, cell) {
        if (cell < 12)
            return frame;
        const grid = document.createElement('div');
        grid.className = 'matrix-grid';
        const rows = document.createElement('div'), cols = document.createElement('div');
        rows.className = 'row-labels';
        cols.className = 'col-labels';
        const qt = labels(meta.queryTokens, nQ), kt = labels(meta.keyTokens, nK);
        const label = (text, box, size) => {
            const el = document.createElement('div');
            el.textContent = text;
            el.title = text;
            el.style[box === rows ? 'height' : 'width'] = size + 'px';
            box.appendChild(el);
        };
        qt.forEach((t) => label(t, rows, cell));
        kt.forEach((t) => label(t, cols, cell));
        grid.append(rows, frame, document.createElement('div'), cols);
        return grid;
    }

    function placeRowMarkers() {
        const cell = cellSize();
        for (const marker of document.querySelectorAll('.row-marker')) {
            marker.hidden = state.active < 0;
            marker.style.top = Math.max(state.active, 0) * cell + 'px';
        }
    }

    function cellAt(e) {
        const rect = e.currentTarget.getBoundingClientRect();
        const j = Math.floor((e.clientX - rect.left) / rect.width * nK);
        const i = Math.floor((e.clientY - rect.top) / rect.height * nQ);
        return {i: Math.min(Math.max(i, 0), nQ - 1), j: Math.min(Math.max(j, 0), nK - 1)};
    }

    function showTooltip(e) {
        const {i, j} = cellAt(e), h = Number(e.currentTarget.dataset.head);
        const w = weightRow(h, i)[j];
        const qt = labels(meta.queryTokens, nQ), kt = labels(meta.keyTokens, nK);
        let text = 'query ' + i + ' → key ' + j + ': ' + w.toFixed(4);
        if (w !== 0 && !isShown(w))
            text += ' (hidden: below the threshold)';
        text += '\nhead ' + h + ': “' + qt[i] + '” → “' + kt[j] + '”';
        const tip = byId('tooltip');
        tip.textContent = text;
        tip.hidden = false;
        tip.style.left = e.clientX + 14 + 'px';
        tip.style.top = e.clientY + 14 + 'px';
    }

    function drawColourBar() {
        const canvas = byId('colorbar'), ctx = canvas.getContext('2d');
        for (let x = 0; x < canvas.width; x++) {
            const [r, g, b] = viridis(x / (canvas.width - 1));
            ctx.fillStyle = 'rgb(' + r + ',' + g + ',' + b + ')';
            ctx.fillRect(x, 0, 1, canvas.height);
        }
        byId('colorbar-max').textContent = scaleMax.toFixed(4);
    }

    function writeLegend() {
        const legend = byId('legend');
        legend.textContent = '';
        legend.hidden = !state.allHeads;
        if (!state.allHeads)
            return;
        for (const h of shownHeads()) {
            const item = document.createElement('span');
            const swatch = document.createElement('span');
            swatch.className = 'swatch';
            swatch.style.background = headColour(h);
            item.append(swatch, 'head ' + h);
            legend.appendChild(item);
        }
    }

    function redraw() {
        writeLegend();
        buildMatrices();
        setActive(state.active);
    }

    function describe() {
        const names = [['layer', 'layers'], ['sequence', 'sequences'], ['head', 'heads'],
                       ['query', 'queries'], ['key', 'keys']];
        byId('shape').textContent =
            meta.shape.map((n, k) => n + ' ' + names[k][n === 1 ? 0 : 1]).join(' × ') +
            '; the largest weight ' + meta.max.toFixed(4);
    }

    /* A view named in the address, as #layer=1&seq=0&head=2&query=5&all&threshold=0.1
     * (indices into the page's lists), for links and screenshots. Unknown
     * names and values out of range are ignored. */
    function readAddress() {
        const at = (name, n) => {
            const v = params.get(name);
            const k = v === null || v === '' ? NaN : Number(v);
            return Number.isInteger(k) && k >= 0 && k < n ? k : -1;
        };
        const params = new URLSearchParams(window.location.hash.slice(1));
        const choose = (id, key, n) => {
            const k = at(id, n);
            if (k >= 0) {
                state[key] = k;
                byId(id).value = String(k);
            }
        };
        choose('layer', 'layer', nLayers);
        choose('seq', 'seq', nSeqs);
        choose('head', 'head', nHeads);
        if (params.has('all') && nHeads > 1) {
            state.allHeads = true;
            byId('all-heads').checked = true;
            byId('head').disabled = true;
        }
        const t = Number(params.get('threshold'));
        if (params.has('threshold') && t >= 0 && t <= 1) {
            /* The slider rounds to its step and clamps to its range: the state
             * takes the value it shows. */
            const slider = byId('threshold');
            slider.value = String(t);
            state.threshold = Number(slider.value);
            byId('threshold-value').textContent = state.threshold.toFixed(3);
        }
        state.active = at('query', nQ);
    }

    describe();
    buildControls();
    readAddress();
    buildHeadView();
    bindHeadView();
    drawColourBar();
    redraw();
})();
