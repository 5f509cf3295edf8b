/*
 * explorer_page.c — writes the explorer's self-contained HTML page (see
 * explorer_page.h). The markup here is only the frame the script fills in;
 * the views themselves are drawn by tools/explorer/explorer.js, embedded at
 * build time (explorer_assets.h, by tools/explorer/embed.py).
 */
#include "explorer_page.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "explorer_assets.h"
#include "svg.h"
#include "utf8.h"

static int64_t cell_count(const int64_t shape[5])
{
    int64_t n = 1;
    for (int a = 0; a < 5; a++)
        n *= shape[a];
    return n;
}

/* The (layer, sequence, head, query) of row r, for messages: the layer by
 * its own number (the input's, when --layers kept some). */
static void row_position(const explorer_page *p, int64_t r, int64_t pos[4])
{
    for (int a = 3; a >= 0; a--) {
        pos[a] = r % p->shape[a];
        r /= p->shape[a];
    }
    if (p->layer_numbers)
        pos[0] = p->layer_numbers[pos[0]];
}

static int check_shape(const explorer_page *p, char *err)
{
    static const char *const axes[5] = {"layers", "sequences", "heads", "queries", "keys"};
    for (int a = 0; a < 5; a++)
        if (p->shape[a] < 1) {
            snprintf(err, EXPLORER_ERROR_SIZE, "the weights have no %s (that axis is 0)",
                     axes[a]);
            return 1;
        }
    if (p->shape[3] > EXPLORER_MAX_TOKENS || p->shape[4] > EXPLORER_MAX_TOKENS) {
        snprintf(err, EXPLORER_ERROR_SIZE,
                 "%lld queries and %lld keys: a page shows at most %d of each",
                 (long long)p->shape[3], (long long)p->shape[4], EXPLORER_MAX_TOKENS);
        return EXPLORER_TOO_LARGE;
    }
    int64_t cells = 1;  /* the product, stopped before it can overflow */
    for (int a = 0; a < 5 && cells <= EXPLORER_MAX_CELLS; a++)
        cells = p->shape[a] > EXPLORER_MAX_CELLS ? EXPLORER_MAX_CELLS + 1 : cells * p->shape[a];
    if (cells > EXPLORER_MAX_CELLS) {
        snprintf(err, EXPLORER_ERROR_SIZE, "more than %lld weights, the most a page holds",
                 (long long)EXPLORER_MAX_CELLS);
        return EXPLORER_TOO_LARGE;
    }
    return 0;
}

/* Every weight finite and in [0, 1], every row summing to 1 or all zero. */
static int check_weights(const explorer_page *p, char *err)
{
    const int64_t n_k = p->shape[4], rows = cell_count(p->shape) / n_k;
    for (int64_t r = 0; r < rows; r++) {
        const float *w = p->weights + r * n_k;
        double sum = 0.0;
        int64_t bad = -1;
        for (int64_t j = 0; j < n_k && bad < 0; j++) {
            if (!(w[j] >= 0.0f && w[j] <= 1.0f))  /* NaN fails both */
                bad = j;
            sum += w[j];
        }
        int64_t pos[4];
        row_position(p, r, pos);
        if (bad >= 0) {
            snprintf(err, EXPLORER_ERROR_SIZE,
                     "the weight of query %lld to key %lld (layer %lld, sequence %lld, head "
                     "%lld) is %g: attention weights lie in [0, 1]",
                     (long long)pos[3], (long long)bad, (long long)pos[0], (long long)pos[1],
                     (long long)pos[2], (double)w[bad]);
            return 1;
        }
        if (sum != 0.0 && fabs(sum - 1.0) > EXPLORER_ROW_SUM_TOLERANCE) {
            snprintf(err, EXPLORER_ERROR_SIZE,
                     "the weights of query %lld (layer %lld, sequence %lld, head %lld) sum to "
                     "%.6g, not 1: attention weights are a softmax over the last axis, which "
                     "must be the keys",
                     (long long)pos[3], (long long)pos[0], (long long)pos[1], (long long)pos[2],
                     sum);
            return 1;
        }
    }
    return 0;
}

static int check_labels(const char *what, const char *const *labels, int64_t n, int64_t per_seq,
                        int64_t seqs, char *err)
{
    if (!labels || n == per_seq || n == per_seq * seqs)
        return 0;
    if (seqs == 1)
        snprintf(err, EXPLORER_ERROR_SIZE, "%lld %s tokens for %lld %s", (long long)n, what,
                 (long long)per_seq, strcmp(what, "query") == 0 ? "queries" : "keys");
    else
        snprintf(err, EXPLORER_ERROR_SIZE,
                 "%lld %s tokens: there must be %lld (one list for every sequence) or %lld "
                 "(%lld sequences one after another)",
                 (long long)n, what, (long long)per_seq, (long long)(per_seq * seqs),
                 (long long)seqs);
    return 1;
}

int explorer_page_check_shape(const int64_t shape[5], char err[EXPLORER_ERROR_SIZE])
{
    const explorer_page p = {.shape = {shape[0], shape[1], shape[2], shape[3], shape[4]}};
    return check_shape(&p, err);
}

int explorer_page_check(const explorer_page *p, char err[EXPLORER_ERROR_SIZE])
{
    int rc = check_shape(p, err);
    if (rc)
        return rc;
    return check_weights(p, err) ||
           check_labels("query", p->query_tokens, p->n_query_tokens, p->shape[3], p->shape[1],
                        err) ||
           check_labels("key", p->key_tokens, p->n_key_tokens, p->shape[4], p->shape[1], err);
}

/* ---- the page ---- */

/* text as a JSON string that is also safe inside a <script> element: "<"
 * and ">" escaped (so neither "</script" nor "<!--" can occur), control
 * characters escaped, invalid UTF-8 replaced by U+FFFD. */
static void json_string(strbuf *sb, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    strbuf_puts(sb, "\"");
    while (*s) {
        size_t n = utf8_sequence_length(s);
        if (n == 0) {
            strbuf_puts(sb, "\\ufffd");
            s++;
            continue;
        }
        if (*s == '"' || *s == '\\')
            strbuf_printf(sb, "\\%c", *s);
        else if (*s < 0x20 || *s == '<' || *s == '>' || *s == '&')
            strbuf_printf(sb, "\\u%04x", *s);
        else
            strbuf_append(sb, (const char *)s, n);
        s += n;
    }
    strbuf_puts(sb, "\"");
}

/* [[...], ...]: one list of labels per sequence given (1 or `seqs`). */
static void json_label_lists(strbuf *sb, const char *const *labels, int64_t n, int64_t per_seq)
{
    strbuf_puts(sb, "[");
    for (int64_t i = 0; i < n; i++) {
        strbuf_puts(sb, i % per_seq == 0 ? (i ? "],[" : "[") : ",");
        json_string(sb, labels[i]);
    }
    strbuf_puts(sb, "]]");
}

static void write_meta(strbuf *sb, const explorer_page *p)
{
    float largest = 0.0f;
    for (int64_t i = 0, n = cell_count(p->shape); i < n; i++)
        largest = p->weights[i] > largest ? p->weights[i] : largest;
    strbuf_puts(sb, "<script type=\"application/json\" id=\"attn-meta\">{\"shape\":[");
    for (int a = 0; a < 5; a++)
        strbuf_printf(sb, "%s%lld", a ? "," : "", (long long)p->shape[a]);
    strbuf_puts(sb, "],\"layers\":[");
    for (int64_t l = 0; l < p->shape[0]; l++)
        strbuf_printf(sb, "%s%lld", l ? "," : "",
                      (long long)(p->layer_numbers ? p->layer_numbers[l] : l));
    strbuf_printf(sb, "],\"max\":%.9g,\"queryTokens\":", (double)largest);
    const char *const *keys = p->key_tokens;
    int64_t n_keys = p->n_key_tokens;
    if (!keys && p->shape[3] == p->shape[4]) {
        keys = p->query_tokens;
        n_keys = p->n_query_tokens;
    }
    if (p->query_tokens)
        json_label_lists(sb, p->query_tokens, p->n_query_tokens, p->shape[3]);
    else
        strbuf_puts(sb, "null");
    strbuf_puts(sb, ",\"keyTokens\":");
    if (keys)
        json_label_lists(sb, keys, n_keys, p->shape[4]);
    else
        strbuf_puts(sb, "null");
    strbuf_puts(sb, "}</script>\n");
}

/* The weights as little-endian float32 in base64 (RFC 4648): exact, and
 * about 5.3 bytes a weight where decimal text would take 10 or more. */
static void write_weights(strbuf *sb, const float *w, int64_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    strbuf_puts(sb, "<script type=\"application/octet-stream\" id=\"attn-weights\">");
    unsigned char bytes[3];
    int have = 0;
    char out[4];
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &w[i], sizeof bits);
        for (int b = 0; b < 4; b++) {
            bytes[have++] = (unsigned char)(bits >> (8 * b));  /* least significant first */
            if (have == 3) {
                out[0] = digits[bytes[0] >> 2];
                out[1] = digits[(bytes[0] & 3) << 4 | bytes[1] >> 4];
                out[2] = digits[(bytes[1] & 15) << 2 | bytes[2] >> 6];
                out[3] = digits[bytes[2] & 63];
                strbuf_append(sb, out, 4);
                have = 0;
            }
        }
    }
    if (have > 0) {
        if (have == 1)
            bytes[1] = 0;
        out[0] = digits[bytes[0] >> 2];
        out[1] = digits[(bytes[0] & 3) << 4 | bytes[1] >> 4];
        out[2] = have == 2 ? digits[(bytes[1] & 15) << 2] : '=';
        out[3] = '=';
        strbuf_append(sb, out, 4);
    }
    strbuf_puts(sb, "</script>\n");
}

static void write_head(strbuf *sb, const char *title)
{
    strbuf_puts(sb, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    /* default-src 'none' forbids every fetch, image, font, frame and
     * connection, to any host and to file: URLs; the script and the style
     * sheet below run because their hashes are listed, and nothing else
     * would. */
    strbuf_printf(sb,
                  "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                  "script-src 'sha256-%s'; style-src 'sha256-%s'; base-uri 'none'; "
                  "form-action 'none'\">\n",
                  explorer_js_sha256, explorer_css_sha256);
    strbuf_puts(sb, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                    "<meta name=\"generator\" content=\"attn explore\">\n<title>");
    svg_escape(sb, title);
    strbuf_puts(sb, " — attention explorer</title>\n<style>");
    strbuf_puts(sb, explorer_css);  /* byte for byte: its hash is in the policy */
    strbuf_puts(sb, "</style>\n</head>\n");
}

static const char controls[] =
    "<div id=\"controls\">\n"
    "<label id=\"layer-label\">Layer <select id=\"layer\"></select></label>\n"
    "<label id=\"seq-label\">Sequence <select id=\"seq\"></select></label>\n"
    "<label id=\"head-label\">Head <select id=\"head\"></select></label>\n"
    "<label id=\"all-heads-label\"><input type=\"checkbox\" id=\"all-heads\"> all heads of the "
    "layer</label>\n"
    "<label>Hide weights below <input type=\"range\" id=\"threshold\" min=\"0\" max=\"1\" "
    "step=\"0.001\" value=\"0\"> <output id=\"threshold-value\" for=\"threshold\">0.000</output>"
    "</label>\n"
    "</div>\n";

static const char views[] =
    "<main>\n"
    "<section id=\"head-view\" aria-labelledby=\"head-view-title\">\n"
    "<h2 id=\"head-view-title\">Head view</h2>\n"
    "<p class=\"hint\">Each line joins a query (left) to a key (right); its opacity is the "
    "weight. Hover over a query, or focus one (Tab, then \xE2\x86\x91 \xE2\x86\x93 Home End; "
    "Esc shows all again), to see only its weights, written beside the keys.</p>\n"
    "<div class=\"legend\" id=\"legend\" hidden></div>\n"
    "<p class=\"hint\" id=\"lines-note\" hidden></p>\n"
    "<div id=\"head-grid\"><div class=\"tokens\" id=\"queries\"></div>"
    "<canvas id=\"lines\"></canvas><div class=\"tokens\" id=\"keys\"></div></div>\n"
    "</section>\n"
    "<section id=\"matrix-view\" aria-labelledby=\"matrix-view-title\">\n"
    "<h2 id=\"matrix-view-title\">Matrix view</h2>\n"
    "<p class=\"hint\">Rows are queries, columns keys, as in D2L's show_heatmaps. Hatched "
    "cells: weight 0 (a masked key) or below the threshold. Click a row to focus its "
    "query.</p>\n"
    "<div id=\"matrices\"></div>\n"
    "<div id=\"colorbar-box\"><span>0</span><canvas id=\"colorbar\" width=\"200\" "
    "height=\"12\"></canvas><span id=\"colorbar-max\"></span></div>\n"
    "</section>\n"
    "</main>\n"
    "<div id=\"tooltip\" role=\"tooltip\" hidden></div>\n";

void explorer_page_render(strbuf *sb, const explorer_page *p)
{
    const char *title = p->title ? p->title : "Attention weights";
    write_head(sb, title);
    strbuf_puts(sb, "<body>\n<header>\n<h1>");
    svg_escape(sb, title);
    strbuf_puts(sb, "</h1>\n<p class=\"subtitle\">");
    if (p->source) {
        svg_escape(sb, p->source);
        strbuf_puts(sb, ": ");
    }
    strbuf_puts(sb, "<span id=\"shape\"></span></p>\n</header>\n"
                    "<noscript><p>The explorer needs JavaScript. The weights are in this "
                    "file's attn-weights element.</p></noscript>\n");
    strbuf_puts(sb, controls);
    strbuf_puts(sb, views);
    write_meta(sb, p);
    write_weights(sb, p->weights, cell_count(p->shape));
    strbuf_puts(sb, "<script>");
    strbuf_puts(sb, explorer_js);  /* byte for byte: its hash is in the policy */
    strbuf_puts(sb, "</script>\n</body>\n</html>\n");
}
