/*
 * explore_cmd.c — `attn explore`: saved attention weights as an interactive
 * page (explorer_page.h), the browser form of D2L's show_heatmaps with
 * bertviz's head view.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cli.h"
#include "explorer_page.h"
#include "tensor_io.h"
#include "utf8.h"

#define CMD "explore"

static const char usage[] =
    "Usage: attn explore WEIGHTS.npy -o PAGE.html [--tokens FILE] [--key-tokens FILE]\n"
    "                    [--layers LIST] [--title TEXT]\n"
    "\n"
    "Writes an attention explorer: one self-contained HTML page that any browser\n"
    "opens from disk, with no server and no network (its Content-Security-Policy\n"
    "forbids every request). It shows\n"
    "  - the head view, as bertviz draws it: query tokens on the left, key tokens\n"
    "    on the right, a line per weight whose opacity is the weight; hover over\n"
    "    or focus a query to see only its weights, written to 4 decimals;\n"
    "  - the matrix view, D2L's show_heatmaps: a heatmap per head with a colour\n"
    "    bar (viridis) and a tooltip \"query i -> key j: w\";\n"
    "  - layer, sequence and head selectors, one head or all heads of a layer, a\n"
    "    threshold slider that hides the weights below it, and the keyboard: Tab\n"
    "    to the queries, then the arrow keys, Home, End; Esc shows all again.\n"
    "\n"
    "WEIGHTS.npy holds attention weights (float32 or float64: attn run --weights,\n"
    "attn generate --attention, PyTorch's need_weights=True ...) shaped\n"
    "  [heads, queries, keys]\n"
    "  [sequences, heads, queries, keys]\n"
    "  [layers, sequences, heads, queries, keys]\n"
    "Each row, one query's weights over the keys, must be a softmax (values in\n"
    "[0, 1] that sum to 1, within 0.001) or all zero (every key masked).\n";

static const char usage_options[] =
    "\n"
    "Options:\n"
    "  -o, --out PAGE.html  the page to write (completely or not at all)\n"
    "  --tokens FILE        the queries' tokens, one per line, UTF-8: as many as\n"
    "                       there are queries, or sequences x queries (a list per\n"
    "                       sequence, one after another). They label the keys too\n"
    "                       when there are as many keys and no --key-tokens.\n"
    "                       Default: the positions 0, 1, ...\n"
    "  --key-tokens FILE    the keys' tokens, likewise\n"
    "  --layers LIST        the layers of a 5-D array to keep: numbers and ranges\n"
    "                       such as 3, 0,2 or 1-3 (default: all)\n"
    "  --title TEXT         the page's heading (default: the file's name)\n"
    "  -h, --help           show this help\n"
    "\n"
    "A page holds at most 1024 queries, 1024 keys and 2097152 weights (about\n"
    "11 MB); larger arrays are refused: keep fewer layers with --layers, or slice\n"
    "the array in NumPy.\n"
    "Exit status: 0 on success, 1 when an input is refused or the page cannot be\n"
    "written, 2 for a usage error.\n";

/* ---- token files ---- */

typedef struct token_list {
    char *text;     /* the file, its line ends replaced by NULs */
    char **tokens;  /* pointers into text */
    int64_t count;
} token_list;

static void token_list_free(token_list *t)
{
    free(t->text);
    free(t->tokens);
    memset(t, 0, sizeof *t);
}

/* One token a line: a last line without its newline counts, an empty file
 * has none, and a "\r" before a newline is dropped (files from Windows). */
static int read_tokens(const char *path, token_list *t)
{
    char err[FILE_ERROR_SIZE];
    unsigned char *bytes;
    size_t size;
    memset(t, 0, sizeof *t);
    if (read_whole_file(path, &bytes, &size, err))
        return cli_refuse(CMD, "%s: %s", path, err);
    char *text = realloc(bytes, size + 1);
    if (!text) {
        free(bytes);
        return cli_refuse(CMD, "%s: out of memory", path);
    }
    text[size] = '\0';
    long long bad = utf8_first_invalid((const unsigned char *)text, size);
    if (bad >= 0) {
        free(text);
        return cli_refuse(CMD, "%s: not UTF-8 text (at byte %lld)", path, bad);
    }
    int64_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n' || i + 1 == size;
    t->text = text;
    t->tokens = malloc((size_t)(lines ? lines : 1) * sizeof *t->tokens);
    if (!t->tokens) {
        token_list_free(t);
        return cli_refuse(CMD, "%s: out of memory", path);
    }
    for (char *p = text; p < text + size; t->count++) {
        char *end = memchr(p, '\n', (size_t)(text + size - p));
        end = end ? end : text + size;
        *end = '\0';
        if (end > p && end[-1] == '\r')
            end[-1] = '\0';
        t->tokens[t->count] = p;
        p = end + 1;
    }
    return CLI_OK;
}

/* ---- --layers ---- */

/* Parses "3", "0,2", "1-3,5" into keep[0 .. n_layers): CLI_USAGE for text
 * that is not such a list, CLI_REFUSED for a layer the array lacks. */
static int parse_layers(const char *text, int64_t n_layers, unsigned char *keep)
{
    const char *p = text;
    for (;;) {
        char *end;
        long long first = strtoll(p, &end, 10), last = first;
        if (end == p || *p == '-' || *p == '+' || *p == ' ')
            return cli_usage_error(CMD, "--layers: '%s' is not a list such as 0,2 or 1-3", text);
        if (*end == '-') {
            p = end + 1;
            last = strtoll(p, &end, 10);
            if (end == p || *p == '-' || *p == '+' || *p == ' ' || last < first)
                return cli_usage_error(CMD, "--layers: '%s' is not a list such as 0,2 or 1-3",
                                       text);
        }
        if (last >= n_layers)
            return cli_refuse(CMD, "--layers: there is no layer %lld: the weights have %lld "
                              "layer%s (0 to %lld)", last, (long long)n_layers,
                              n_layers == 1 ? "" : "s", (long long)n_layers - 1);
        for (long long l = first; l <= last; l++)
            keep[l] = 1;
        if (*end == '\0')
            return CLI_OK;
        if (*end != ',')
            return cli_usage_error(CMD, "--layers: '%s' is not a list such as 0,2 or 1-3", text);
        p = end + 1;
    }
}

/* ---- the command ---- */

typedef struct explore_options {
    const char *out, *tokens, *key_tokens, *layers, *title;
} explore_options;

/* The weights' shape as [layers, sequences, heads, queries, keys]. */
static int five_axes(const char *path, const npy_array *w, int64_t shape[5])
{
    if (w->ndim < 3 || w->ndim > 5) {
        char text[128];
        return cli_refuse(CMD, "%s: the weights must be [heads, queries, keys], [sequences, "
                          "heads, queries, keys] or [layers, sequences, heads, queries, keys]; "
                          "the shape is %s", path, npy_shape_string(w, text, sizeof text));
    }
    for (int a = 0; a < 5; a++)
        shape[a] = a < 5 - w->ndim ? 1 : w->shape[a - (5 - w->ndim)];
    return CLI_OK;
}

/* Keeps the layers --layers names, in order: moves them to the front of
 * w's data (in place) and lists their numbers. */
static int select_layers(const explore_options *o, npy_array *w, int64_t shape[5],
                         int64_t **numbers)
{
    *numbers = NULL;
    if (!o->layers)
        return CLI_OK;
    unsigned char *keep = calloc((size_t)shape[0], 1);
    *numbers = malloc((size_t)shape[0] * sizeof **numbers);
    if (!keep || !*numbers) {
        free(keep);
        return cli_refuse(CMD, "--layers: out of memory");
    }
    int rc = parse_layers(o->layers, shape[0], keep);
    if (rc == CLI_OK) {
        const int64_t per_layer = shape[1] * shape[2] * shape[3] * shape[4];
        float *data = w->data;
        int64_t kept = 0;
        for (int64_t l = 0; l < shape[0]; l++)
            if (keep[l]) {
                memmove(data + kept * per_layer, data + l * per_layer,
                        (size_t)per_layer * sizeof *data);
                (*numbers)[kept++] = l;
            }
        shape[0] = kept;
    }
    free(keep);
    return rc;
}

static int load_labels(const char *path, token_list *t, const char *const **labels,
                       int64_t *count)
{
    *labels = NULL;
    *count = 0;
    if (!path)
        return CLI_OK;
    int rc = read_tokens(path, t);
    if (rc == CLI_OK) {
        *labels = (const char *const *)t->tokens;
        *count = t->count;
    }
    return rc;
}

/* The file's name without its directories, the default title. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int explore(const char *in, const explore_options *o)
{
    npy_array w;
    int64_t shape[5], *numbers = NULL;
    token_list qt = {0}, kt = {0};
    explorer_page page = {.title = o->title ? o->title : base_name(in), .source = in};
    int rc = io_load_floats(CMD, in, &w);
    if (rc != CLI_OK)
        return rc;
    if ((rc = five_axes(in, &w, shape)) == CLI_OK &&
        (rc = select_layers(o, &w, shape, &numbers)) == CLI_OK &&
        (rc = load_labels(o->tokens, &qt, &page.query_tokens, &page.n_query_tokens)) ==
            CLI_OK)
        rc = load_labels(o->key_tokens, &kt, &page.key_tokens, &page.n_key_tokens);
    if (rc == CLI_OK) {
        memcpy(page.shape, shape, sizeof shape);
        page.layer_numbers = numbers;
        page.weights = w.data;
        rc = io_save_explorer(CMD, o->out, in, &page,
                              "(keep fewer layers with --layers, or slice the array)");
    }
    token_list_free(&qt);
    token_list_free(&kt);
    free(numbers);
    npy_array_free(&w);
    return rc;
}

int cmd_explore(int argc, char **argv)
{
    explore_options o = {0};
    const cli_option opts[] = {
        {"--out", "-o", &o.out},         {"--tokens", NULL, &o.tokens},
        {"--key-tokens", NULL, &o.key_tokens}, {"--layers", NULL, &o.layers},
        {"--title", NULL, &o.title},
    };
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], positional, 1,
                       &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(usage, stdout);
        fputs(usage_options, stdout);
        return CLI_OK;
    }
    if (n_positional != 1)
        return cli_usage_error(CMD, "which weights file? (attn explore W.npy -o page.html)");
    if (!o.out)
        return cli_usage_error(CMD, "-o PAGE.html is required");
    return explore(positional[0], &o);
}
